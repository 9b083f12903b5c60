/*
 * Test driver for the manifest parser: reads records from standard input,
 * each a 4-byte big-endian length and that many bytes, and prints one line
 * per record: "ok STAGE" or "error REASON". The fuzz test runs it under
 * AddressSanitizer and UndefinedBehaviorSanitizer.
 */
#include <stdio.h>
#include <stdlib.h>

#include "manifest.h"

/* Records may be longer than a manifest so that the size limit is exercised. */
#define RECORD_MAX (QV_MANIFEST_MAX_SIZE * 2u)

static int read_exact(unsigned char *buffer, size_t size) {
  return fread(buffer, 1, size, stdin) == size;
}

int main(void) {
  static uint8_t record[RECORD_MAX];
  unsigned char length_bytes[4];

  while (read_exact(length_bytes, sizeof(length_bytes))) {
    size_t size = ((size_t)length_bytes[0] << 24) | ((size_t)length_bytes[1] << 16) | ((size_t)length_bytes[2] << 8) |
                  (size_t)length_bytes[3];
    if (size > RECORD_MAX || !read_exact(record, size)) {
      fprintf(stderr, "test-parse: record of %zu bytes is truncated or longer than %u\n", size, RECORD_MAX);
      return 2;
    }

    struct qv_manifest manifest;
    char reason[QV_REASON_SIZE];
    if (qv_manifest_parse(record, size, &manifest, reason, sizeof(reason)) == 0) {
      printf("ok %s\n", manifest.stage_name);
    } else {
      printf("error %s\n", reason);
    }
  }
  return 0;
}
