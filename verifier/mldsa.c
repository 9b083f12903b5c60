#include "mldsa.h"

#include <string.h>

#include "api.h"
#include "sha2.h"

_Static_assert(QV_PUBLIC_KEY_SIZE == PQCLEAN_MLDSA87_CLEAN_CRYPTO_PUBLICKEYBYTES, "ML-DSA-87 public key size");

/*
 * DER of SubjectPublicKeyInfo up to the key bytes, for a 2592-byte key:
 * SEQUENCE (2610 bytes) { SEQUENCE (11 bytes) { OID 2.16.840.1.101.3.4.3.19 },
 * BIT STRING (2593 bytes: 0 unused bits, then the key) }.
 */
static const uint8_t SPKI_PREFIX[22] = {
  0x30, 0x82, 0x0a, 0x32,
  0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x13,
  0x03, 0x82, 0x0a, 0x21, 0x00,
};

void qv_key_id(const uint8_t public_key[QV_PUBLIC_KEY_SIZE], uint8_t key_id[32]) {
  uint8_t spki[sizeof(SPKI_PREFIX) + QV_PUBLIC_KEY_SIZE];

  memcpy(spki, SPKI_PREFIX, sizeof(SPKI_PREFIX));
  memcpy(spki + sizeof(SPKI_PREFIX), public_key, QV_PUBLIC_KEY_SIZE);
  sha256(key_id, spki, sizeof(spki));
}

size_t qv_signature_context(const char *stage, uint8_t *context, size_t context_size) {
  size_t prefix_size = strlen(QV_CONTEXT_PREFIX);
  size_t stage_size = strlen(stage);
  size_t size = prefix_size + stage_size;

  if (size > context_size || size > QV_CONTEXT_MAX) return 0;
  memcpy(context, QV_CONTEXT_PREFIX, prefix_size);
  memcpy(context + prefix_size, stage, stage_size);
  return size;
}

int qv_mldsa87_verify(const uint8_t *signature, size_t signature_size, const uint8_t *message, size_t message_size,
                      const uint8_t *context, size_t context_size, const uint8_t public_key[QV_PUBLIC_KEY_SIZE]) {
  if (signature_size != PQCLEAN_MLDSA87_CLEAN_CRYPTO_BYTES) return 0;
  return PQCLEAN_MLDSA87_CLEAN_crypto_sign_verify_ctx(signature, signature_size, message, message_size, context,
                                                      context_size, public_key) == 0;
}
