/* Image checks: the SHA-512 of the image span and the dm-verity root digest. */
#ifndef QWAMOS_VERIFIER_IMAGE_H
#define QWAMOS_VERIFIER_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "manifest.h"

/* Fails with "image too small" unless `fd` (a file or block device) has at least `size` bytes. */
int qv_image_check_size(int fd, uint64_t size, char *reason, size_t reason_size);

/* Hashes the first `size` bytes of `fd` and compares them with `expected`. Returns 0 or -1 with a reason. */
int qv_image_check_sha512(int fd, uint64_t size, const uint8_t expected[QV_SHA512_SIZE], char *reason, size_t reason_size);

/*
 * Reads the top-level hash block of the dm-verity tree (the first hash
 * block, as veritysetup --format=1 writes the tree top level first) and
 * checks that hash(salt || block) equals the root digest. Returns 0 or -1
 * with a reason.
 */
int qv_image_check_verity_root(int fd, const struct qv_verity *verity, char *reason, size_t reason_size);

#endif
