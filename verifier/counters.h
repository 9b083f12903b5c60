/*
 * Rollback counter store: a small fixed-layout record at the start of a
 * file or block device. In QEMU it lives on a dedicated virtio disk in place
 * of a phone's RPMB. docs/stage-manifest.md describes it.
 */
#ifndef QWAMOS_VERIFIER_COUNTERS_H
#define QWAMOS_VERIFIER_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

#include "manifest.h"

#define QV_COUNTERS_MAGIC "QWAMOSRB"
#define QV_COUNTERS_VERSION 1u
#define QV_COUNTERS_SIZE 304u

/*
 * Layout, all integers big-endian:
 *
 *   offset size field
 *        0    8 magic "QWAMOSRB"
 *        8    4 version (1)
 *       12    4 slot count (32)
 *       16  256 32 rollback counters, u64 each, slot i at 16 + 8 * i
 *      272   32 SHA-256 of bytes 0 to 271
 */
enum {
  QV_COUNTERS_OFF_MAGIC = 0,
  QV_COUNTERS_OFF_VERSION = 8,
  QV_COUNTERS_OFF_SLOT_COUNT = 12,
  QV_COUNTERS_OFF_SLOTS = 16,
  QV_COUNTERS_OFF_CHECKSUM = 272
};

struct qv_counters {
  uint64_t slots[QV_ROLLBACK_LOCATIONS];
};

/* Reads and checks the store at the start of `fd`. Returns 0, or -1 with a reason. */
int qv_counters_read(int fd, struct qv_counters *counters, char *reason, size_t reason_size);

/* Writes the store to the start of `fd` and waits for fsync. Returns 0, or -1 with a reason. */
int qv_counters_write(int fd, const struct qv_counters *counters, char *reason, size_t reason_size);

#endif
