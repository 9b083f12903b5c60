/*
 * ML-DSA-87 (FIPS 204) verification and key ids for the stage manifest,
 * on top of the PQClean ml-dsa-87 "clean" implementation.
 */
#ifndef QWAMOS_VERIFIER_MLDSA_H
#define QWAMOS_VERIFIER_MLDSA_H

#include <stddef.h>
#include <stdint.h>

#define QV_PUBLIC_KEY_SIZE 2592u
#define QV_CONTEXT_PREFIX "qwamos/stage-manifest/v1/"
#define QV_CONTEXT_MAX 255u

/*
 * Writes the key id of `public_key` to `key_id`: the SHA-256 of its
 * SubjectPublicKeyInfo DER with the id-ml-dsa-87 OID 2.16.840.1.101.3.4.3.19
 * (RFC 9881).
 */
void qv_key_id(const uint8_t public_key[QV_PUBLIC_KEY_SIZE], uint8_t key_id[32]);

/*
 * Writes the signature context of `stage` to `context` and returns its size,
 * or 0 when it does not fit in `context_size` bytes.
 */
size_t qv_signature_context(const char *stage, uint8_t *context, size_t context_size);

/*
 * Verifies a pure ML-DSA-87 signature (FIPS 204 ML-DSA.Verify, with
 * `context`). Returns 1 when it is valid, 0 otherwise.
 */
int qv_mldsa87_verify(const uint8_t *signature, size_t signature_size, const uint8_t *message, size_t message_size,
                      const uint8_t *context, size_t context_size, const uint8_t public_key[QV_PUBLIC_KEY_SIZE]);

#endif
