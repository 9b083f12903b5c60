/*
 * QWAMOS stage manifest, format version 1, and its parser. The parser
 * checks every size and offset against the buffer and never allocates:
 * the parsed manifest points into the caller's buffer. The layout below is
 * the contract with signing/manifest.ts; docs/stage-manifest.md explains
 * each field.
 */
#ifndef QWAMOS_VERIFIER_MANIFEST_H
#define QWAMOS_VERIFIER_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#define QV_MANIFEST_MAGIC "QWAMOSMF"
#define QV_MANIFEST_MAGIC_SIZE 8u
#define QV_FORMAT_VERSION 1u
#define QV_HEADER_SIZE 256u
#define QV_MANIFEST_MAX_SIZE 8192u

#define QV_SIGNATURE_SIZE 4627u /* ML-DSA-87 signature */
#define QV_KEY_ID_SIZE 32u      /* SHA-256 of the SubjectPublicKeyInfo DER */
#define QV_SHA512_SIZE 64u
#define QV_ROOT_DIGEST_FIELD_SIZE 64u

#define QV_STAGE_NAME_MAX 32u
#define QV_DEVICE_PROFILE_MAX 64u
#define QV_NEXT_KEY_IDS_MAX 8u
#define QV_VERITY_SALT_MAX 256u
#define QV_ROLLBACK_LOCATIONS 32u

#define QV_FLAG_VERITY 0x1u
#define QV_VERITY_SHA256 1u
#define QV_VERITY_SHA512 2u
#define QV_VERITY_BLOCK_MIN 512u
#define QV_VERITY_BLOCK_MAX 65536u

/* Room for any reason string the verifier prints. */
#define QV_REASON_SIZE 192u

/*
 * Header, 256 bytes, all integers big-endian:
 *
 *   offset size field
 *        0    8 magic "QWAMOSMF"
 *        8    4 format version (1)
 *       12    4 flags (bit 0: the image is dm-verity protected; other bits 0)
 *       16    4 signed size: header plus variable area, the bytes the signature covers
 *       20    4 signature size (4627)
 *       24    8 image size in bytes, the span the SHA-512 covers
 *       32    8 rollback index
 *       40    4 rollback index location (counter slot, 0 to 31)
 *       44    1 stage name size (1 to 32)
 *       45    1 device profile id size (1 to 64)
 *       46    1 next-stage key id count (0 to 8)
 *       47    1 reserved (0)
 *       48   64 SHA-512 of the first image-size bytes of the image
 *      112   32 signer key id
 *      144    4 verity hash algorithm (1 sha256, 2 sha512; 0 without verity)
 *      148    4 verity data block size
 *      152    4 verity hash block size
 *      156    4 verity salt size (0 to 256)
 *      160    8 verity data block count
 *      168    8 verity hash tree offset in bytes from the start of the image
 *      176   64 verity root digest (32 or 64 bytes used, the rest 0)
 *      240   16 reserved (0)
 *
 * The variable area follows at offset 256 without padding: stage name,
 * device profile id, verity salt, next-stage key ids (32 bytes each). The
 * signature follows the variable area and ends the file.
 */
enum {
  QV_OFF_MAGIC = 0,
  QV_OFF_FORMAT_VERSION = 8,
  QV_OFF_FLAGS = 12,
  QV_OFF_SIGNED_SIZE = 16,
  QV_OFF_SIGNATURE_SIZE = 20,
  QV_OFF_IMAGE_SIZE = 24,
  QV_OFF_ROLLBACK_INDEX = 32,
  QV_OFF_ROLLBACK_LOCATION = 40,
  QV_OFF_STAGE_NAME_SIZE = 44,
  QV_OFF_DEVICE_PROFILE_SIZE = 45,
  QV_OFF_NEXT_KEY_COUNT = 46,
  QV_OFF_RESERVED_BYTE = 47,
  QV_OFF_IMAGE_SHA512 = 48,
  QV_OFF_SIGNER_KEY_ID = 112,
  QV_OFF_VERITY_ALGORITHM = 144,
  QV_OFF_VERITY_DATA_BLOCK_SIZE = 148,
  QV_OFF_VERITY_HASH_BLOCK_SIZE = 152,
  QV_OFF_VERITY_SALT_SIZE = 156,
  QV_OFF_VERITY_DATA_BLOCK_COUNT = 160,
  QV_OFF_VERITY_HASH_TREE_OFFSET = 168,
  QV_OFF_VERITY_ROOT_DIGEST = 176,
  QV_OFF_RESERVED = 240
};

struct qv_verity {
  uint32_t hash_algorithm;
  uint32_t data_block_size;
  uint32_t hash_block_size;
  uint64_t data_block_count;
  uint64_t hash_tree_offset;
  const uint8_t *root_digest;
  size_t root_digest_size;
  const uint8_t *salt;
  size_t salt_size;
};

/* A parsed manifest. Pointers point into the buffer given to the parser. */
struct qv_manifest {
  uint32_t flags;
  uint64_t image_size;
  uint64_t rollback_index;
  uint32_t rollback_index_location;
  const uint8_t *image_sha512;
  const uint8_t *signer_key_id;
  char stage_name[QV_STAGE_NAME_MAX + 1];
  char device_profile[QV_DEVICE_PROFILE_MAX + 1];
  const uint8_t *next_key_ids;
  size_t next_key_id_count;
  int has_verity;
  struct qv_verity verity;
  const uint8_t *signed_data;
  size_t signed_size;
  const uint8_t *signature;
  size_t signature_size;
};

/*
 * Parses `size` bytes at `data`. Returns 0 on success. On failure returns
 * -1 and writes a reason such as "truncated manifest (100 bytes, header is
 * 256)" to `reason`. The signature is not checked here.
 */
int qv_manifest_parse(const uint8_t *data, size_t size, struct qv_manifest *manifest,
                      char *reason, size_t reason_size);

/* Returns 1 when `name` is a valid stage name, 0 otherwise. */
int qv_is_valid_stage_name(const char *name);

/* Returns 1 when `id` is a valid device profile id, 0 otherwise. */
int qv_is_valid_device_profile(const char *id);

#endif
