/*
 * Test driver for ML-DSA-87 signature verification: reads one case per
 * line from standard input, "PK MESSAGE CONTEXT SIGNATURE" in hex with "-"
 * for an empty field, and prints "1" when the signature verifies and "0"
 * when it does not. It calls the same function as qwamos-verify.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mldsa.h"

/* Decodes a hex field in place of `text`; returns its byte count, or -1 when it is not hex. */
static long decode_hex(char *text, uint8_t *out) {
  size_t size = strlen(text);

  if (strcmp(text, "-") == 0) return 0;
  if (size % 2 != 0) return -1;
  for (size_t i = 0; i < size / 2; i++) {
    unsigned int byte;
    if (sscanf(text + 2 * i, "%2x", &byte) != 1) return -1;
    out[i] = (uint8_t)byte;
  }
  return (long)(size / 2);
}

int main(void) {
  char *line = NULL;
  size_t capacity = 0;
  ssize_t length;
  unsigned long line_number = 0;

  while ((length = getline(&line, &capacity, stdin)) > 0) {
    char *fields[4];
    char *save = NULL;
    line_number++;

    fields[0] = strtok_r(line, " \n", &save);
    for (int i = 1; i < 4; i++) fields[i] = strtok_r(NULL, " \n", &save);
    if (fields[3] == NULL) {
      fprintf(stderr, "test-acvp: line %lu has fewer than 4 fields\n", line_number);
      return 2;
    }

    uint8_t *bytes = malloc((size_t)length);
    if (bytes == NULL) {
      fprintf(stderr, "test-acvp: out of memory at line %lu\n", line_number);
      return 2;
    }
    uint8_t *pk = bytes;
    long pk_size = decode_hex(fields[0], pk);
    uint8_t *message = pk + (pk_size > 0 ? pk_size : 0);
    long message_size = decode_hex(fields[1], message);
    uint8_t *context = message + (message_size > 0 ? message_size : 0);
    long context_size = decode_hex(fields[2], context);
    uint8_t *signature = context + (context_size > 0 ? context_size : 0);
    long signature_size = decode_hex(fields[3], signature);

    if (pk_size != QV_PUBLIC_KEY_SIZE || message_size < 0 || context_size < 0 || signature_size < 0) {
      fprintf(stderr, "test-acvp: line %lu has a field that is not hex or has the wrong size\n", line_number);
      return 2;
    }
    int valid = qv_mldsa87_verify(signature, (size_t)signature_size, message, (size_t)message_size, context,
                                  (size_t)context_size, pk);
    printf("%d\n", valid);
    free(bytes);
  }
  free(line);
  return 0;
}
