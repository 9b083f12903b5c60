#include "counters.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sha2.h"

static void encode(const struct qv_counters *counters, uint8_t record[QV_COUNTERS_SIZE]) {
  memset(record, 0, QV_COUNTERS_SIZE);
  memcpy(record + QV_COUNTERS_OFF_MAGIC, QV_COUNTERS_MAGIC, 8);
  record[QV_COUNTERS_OFF_VERSION + 3] = QV_COUNTERS_VERSION;
  record[QV_COUNTERS_OFF_SLOT_COUNT + 3] = QV_ROLLBACK_LOCATIONS;
  for (size_t slot = 0; slot < QV_ROLLBACK_LOCATIONS; slot++) {
    for (size_t byte = 0; byte < 8; byte++) {
      record[QV_COUNTERS_OFF_SLOTS + 8 * slot + byte] = (uint8_t)(counters->slots[slot] >> (56 - 8 * byte));
    }
  }
  sha256(record + QV_COUNTERS_OFF_CHECKSUM, record, QV_COUNTERS_OFF_CHECKSUM);
}

static uint32_t read_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Reads exactly `size` bytes at offset 0 unless the file ends first; returns the count or -1. */
static ssize_t read_record(int fd, uint8_t *buffer, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, buffer + done, size - done, (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    done += (size_t)n;
  }
  return (ssize_t)done;
}

int qv_counters_read(int fd, struct qv_counters *counters, char *reason, size_t reason_size) {
  uint8_t record[QV_COUNTERS_SIZE];
  uint8_t checksum[32];

  ssize_t size = read_record(fd, record, sizeof(record));
  if (size < 0) {
    snprintf(reason, reason_size, "counter store read failed (%s)", strerror(errno));
    return -1;
  }
  if ((size_t)size < sizeof(record)) {
    snprintf(reason, reason_size, "counter store invalid (%zd bytes, needs %u)", size, QV_COUNTERS_SIZE);
    return -1;
  }
  if (memcmp(record + QV_COUNTERS_OFF_MAGIC, QV_COUNTERS_MAGIC, 8) != 0) {
    snprintf(reason, reason_size, "counter store invalid (bad magic)");
    return -1;
  }
  uint32_t version = read_be32(record + QV_COUNTERS_OFF_VERSION);
  if (version != QV_COUNTERS_VERSION) {
    snprintf(reason, reason_size, "counter store invalid (unsupported version %u)", (unsigned)version);
    return -1;
  }
  uint32_t slot_count = read_be32(record + QV_COUNTERS_OFF_SLOT_COUNT);
  if (slot_count != QV_ROLLBACK_LOCATIONS) {
    snprintf(reason, reason_size, "counter store invalid (slot count %u, expected %u)", (unsigned)slot_count,
             QV_ROLLBACK_LOCATIONS);
    return -1;
  }
  sha256(checksum, record, QV_COUNTERS_OFF_CHECKSUM);
  if (memcmp(checksum, record + QV_COUNTERS_OFF_CHECKSUM, sizeof(checksum)) != 0) {
    snprintf(reason, reason_size, "counter store invalid (checksum mismatch)");
    return -1;
  }

  for (size_t slot = 0; slot < QV_ROLLBACK_LOCATIONS; slot++) {
    const uint8_t *p = record + QV_COUNTERS_OFF_SLOTS + 8 * slot;
    counters->slots[slot] = ((uint64_t)read_be32(p) << 32) | read_be32(p + 4);
  }
  return 0;
}

int qv_counters_write(int fd, const struct qv_counters *counters, char *reason, size_t reason_size) {
  uint8_t record[QV_COUNTERS_SIZE];
  size_t done = 0;

  encode(counters, record);
  while (done < sizeof(record)) {
    ssize_t n = pwrite(fd, record + done, sizeof(record) - done, (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      snprintf(reason, reason_size, "counter store write failed (%s)", n < 0 ? strerror(errno) : "short write");
      return -1;
    }
    done += (size_t)n;
  }
  if (fsync(fd) != 0) {
    snprintf(reason, reason_size, "counter store write failed (%s)", strerror(errno));
    return -1;
  }
  return 0;
}
