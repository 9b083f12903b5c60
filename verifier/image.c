#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sha2.h"

/* 1 MiB, a multiple of the 128-byte SHA-512 block. */
#define READ_CHUNK_SIZE (1u << 20)

static uint8_t chunk[READ_CHUNK_SIZE];
static uint8_t salted_block[QV_VERITY_SALT_MAX + QV_VERITY_BLOCK_MAX];

static int read_error(char *reason, size_t reason_size) {
  snprintf(reason, reason_size, "cannot read image (%s)", strerror(errno));
  return -1;
}

/* Reads up to `size` bytes at `offset`, retrying short reads; returns the count or -1. */
static ssize_t read_at(int fd, uint8_t *buffer, size_t size, uint64_t offset) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, buffer + done, size - done, (off_t)(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    done += (size_t)n;
  }
  return (ssize_t)done;
}

int qv_image_check_size(int fd, uint64_t size, char *reason, size_t reason_size) {
  off_t end = lseek(fd, 0, SEEK_END);
  if (end < 0) return read_error(reason, reason_size);
  if ((uint64_t)end < size) {
    snprintf(reason, reason_size, "image too small (%llu < %llu bytes)", (unsigned long long)end, (unsigned long long)size);
    return -1;
  }
  return 0;
}

int qv_image_check_sha512(int fd, uint64_t size, const uint8_t expected[QV_SHA512_SIZE], char *reason, size_t reason_size) {
  sha512ctx state;
  uint8_t digest[QV_SHA512_SIZE];
  uint64_t offset = 0;

  sha512_inc_init(&state);
  for (;;) {
    uint64_t remaining = size - offset;
    size_t want = remaining < READ_CHUNK_SIZE ? (size_t)remaining : READ_CHUNK_SIZE;
    ssize_t got = read_at(fd, chunk, want, offset);
    if (got < 0) {
      sha512_inc_ctx_release(&state);
      return read_error(reason, reason_size);
    }
    if ((size_t)got < want) {
      sha512_inc_ctx_release(&state);
      snprintf(reason, reason_size, "image too small (%llu < %llu bytes)", (unsigned long long)(offset + (uint64_t)got),
               (unsigned long long)size);
      return -1;
    }
    offset += want;
    if (offset == size) {
      sha512_inc_finalize(digest, &state, chunk, want);
      break;
    }
    sha512_inc_blocks(&state, chunk, want / 128);
  }

  if (memcmp(digest, expected, QV_SHA512_SIZE) != 0) {
    snprintf(reason, reason_size, "digest mismatch");
    return -1;
  }
  return 0;
}

int qv_image_check_verity_root(int fd, const struct qv_verity *verity, char *reason, size_t reason_size) {
  uint8_t digest[64];
  uint8_t *block = salted_block + verity->salt_size;

  memcpy(salted_block, verity->salt, verity->salt_size);
  ssize_t got = read_at(fd, block, verity->hash_block_size, verity->hash_tree_offset);
  if (got < 0) return read_error(reason, reason_size);
  if ((size_t)got < verity->hash_block_size) {
    snprintf(reason, reason_size, "image too small (%llu < %llu bytes)",
             (unsigned long long)(verity->hash_tree_offset + (uint64_t)got),
             (unsigned long long)(verity->hash_tree_offset + verity->hash_block_size));
    return -1;
  }

  size_t salted_size = verity->salt_size + verity->hash_block_size;
  if (verity->hash_algorithm == QV_VERITY_SHA256) {
    sha256(digest, salted_block, salted_size);
  } else {
    sha512(digest, salted_block, salted_size);
  }
  if (memcmp(digest, verity->root_digest, verity->root_digest_size) != 0) {
    snprintf(reason, reason_size, "verity root hash mismatch");
    return -1;
  }
  return 0;
}
