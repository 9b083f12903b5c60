/*
 * Stage manifest parser. The checks run in a fixed order that
 * signing/manifest-parse.ts repeats, so both parsers give the same reason
 * for the same bytes. Every reason starts with one of the names listed in
 * docs/stage-manifest.md.
 */
#include "manifest.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static uint32_t read_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint64_t read_be64(const uint8_t *p) {
  return ((uint64_t)read_be32(p) << 32) | (uint64_t)read_be32(p + 4);
}

static int fail(char *reason, size_t reason_size, const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(reason, reason_size, format, args);
  va_end(args);
  return -1;
}

static int all_zero(const uint8_t *p, size_t size) {
  for (size_t i = 0; i < size; i++) {
    if (p[i] != 0) return 0;
  }
  return 1;
}

static int is_lower_alnum(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Returns the index of the first byte that breaks the name rule, or -1. */
static long first_invalid_name_byte(const uint8_t *p, size_t size, const char *extra) {
  for (size_t i = 0; i < size; i++) {
    int allowed = is_lower_alnum(p[i]) || (i > 0 && p[i] != 0 && strchr(extra, p[i]) != NULL);
    if (!allowed) return (long)i;
  }
  return -1;
}

static int is_valid_name(const char *name, size_t max, const char *extra) {
  size_t size = strlen(name);
  return size >= 1 && size <= max && first_invalid_name_byte((const uint8_t *)name, size, extra) < 0;
}

int qv_is_valid_stage_name(const char *name) {
  return is_valid_name(name, QV_STAGE_NAME_MAX, "_-");
}

int qv_is_valid_device_profile(const char *id) {
  return is_valid_name(id, QV_DEVICE_PROFILE_MAX, "._-");
}

static int is_block_size(uint32_t size) {
  return size >= QV_VERITY_BLOCK_MIN && size <= QV_VERITY_BLOCK_MAX && (size & (size - 1)) == 0;
}

/* Checks the verity fields of the header; the salt is checked with the variable area. */
static int parse_verity(const uint8_t *data, struct qv_manifest *m, char *reason, size_t reason_size) {
  const uint8_t *verity_fields = data + QV_OFF_VERITY_ALGORITHM;
  size_t verity_fields_size = QV_OFF_RESERVED - QV_OFF_VERITY_ALGORITHM;
  struct qv_verity *v = &m->verity;

  if (!m->has_verity) {
    if (!all_zero(verity_fields, verity_fields_size)) {
      return fail(reason, reason_size, "invalid field (verity fields set without the verity flag)");
    }
    return 0;
  }

  v->hash_algorithm = read_be32(data + QV_OFF_VERITY_ALGORITHM);
  v->data_block_size = read_be32(data + QV_OFF_VERITY_DATA_BLOCK_SIZE);
  v->hash_block_size = read_be32(data + QV_OFF_VERITY_HASH_BLOCK_SIZE);
  v->salt_size = read_be32(data + QV_OFF_VERITY_SALT_SIZE);
  v->data_block_count = read_be64(data + QV_OFF_VERITY_DATA_BLOCK_COUNT);
  v->hash_tree_offset = read_be64(data + QV_OFF_VERITY_HASH_TREE_OFFSET);
  v->root_digest = data + QV_OFF_VERITY_ROOT_DIGEST;

  if (v->hash_algorithm == QV_VERITY_SHA256) {
    v->root_digest_size = 32;
  } else if (v->hash_algorithm == QV_VERITY_SHA512) {
    v->root_digest_size = 64;
  } else {
    return fail(reason, reason_size, "invalid field (verity hash algorithm %u)", (unsigned)v->hash_algorithm);
  }
  if (!is_block_size(v->data_block_size)) {
    return fail(reason, reason_size, "invalid field (verity data block size %u)", (unsigned)v->data_block_size);
  }
  if (!is_block_size(v->hash_block_size)) {
    return fail(reason, reason_size, "invalid field (verity hash block size %u)", (unsigned)v->hash_block_size);
  }
  if (v->salt_size > QV_VERITY_SALT_MAX) {
    return fail(reason, reason_size, "oversized field (verity salt size %zu > %u)", v->salt_size, QV_VERITY_SALT_MAX);
  }
  /* With a single data block dm-verity has no hash tree: the root digest is the block's own hash. */
  if (v->data_block_count < 2) {
    return fail(reason, reason_size, "invalid field (verity data block count %llu, minimum 2)",
                (unsigned long long)v->data_block_count);
  }

  /* Division keeps count * block size from overflowing. */
  if (v->data_block_count > m->image_size / v->data_block_size) {
    return fail(reason, reason_size, "invalid field (verity data area exceeds the image size)");
  }
  uint64_t data_area_size = v->data_block_count * v->data_block_size;
  if (v->hash_tree_offset % v->hash_block_size != 0) {
    return fail(reason, reason_size, "invalid field (verity hash tree offset %llu is not a multiple of the hash block size)",
                (unsigned long long)v->hash_tree_offset);
  }
  if (v->hash_tree_offset < data_area_size) {
    return fail(reason, reason_size, "invalid field (verity hash tree offset %llu overlaps the data area)",
                (unsigned long long)v->hash_tree_offset);
  }
  if (m->image_size < v->hash_block_size || v->hash_tree_offset > m->image_size - v->hash_block_size) {
    return fail(reason, reason_size, "invalid field (verity hash tree lies outside the image)");
  }
  if (!all_zero(v->root_digest + v->root_digest_size, QV_ROOT_DIGEST_FIELD_SIZE - v->root_digest_size)) {
    return fail(reason, reason_size, "invalid field (verity root digest padding not zero)");
  }
  return 0;
}

/* Checks the header fields that do not depend on the variable area. */
static int parse_header(const uint8_t *data, struct qv_manifest *m, char *reason, size_t reason_size) {
  uint32_t signature_size = read_be32(data + QV_OFF_SIGNATURE_SIZE);
  size_t stage_name_size = data[QV_OFF_STAGE_NAME_SIZE];
  size_t device_profile_size = data[QV_OFF_DEVICE_PROFILE_SIZE];

  m->flags = read_be32(data + QV_OFF_FLAGS);
  m->image_size = read_be64(data + QV_OFF_IMAGE_SIZE);
  m->rollback_index = read_be64(data + QV_OFF_ROLLBACK_INDEX);
  m->rollback_index_location = read_be32(data + QV_OFF_ROLLBACK_LOCATION);
  m->next_key_id_count = data[QV_OFF_NEXT_KEY_COUNT];
  m->image_sha512 = data + QV_OFF_IMAGE_SHA512;
  m->signer_key_id = data + QV_OFF_SIGNER_KEY_ID;
  m->has_verity = (m->flags & QV_FLAG_VERITY) != 0;

  if ((m->flags & ~QV_FLAG_VERITY) != 0) {
    return fail(reason, reason_size, "invalid field (unknown flags 0x%08x)", (unsigned)m->flags);
  }
  if (data[QV_OFF_RESERVED_BYTE] != 0 || !all_zero(data + QV_OFF_RESERVED, QV_HEADER_SIZE - QV_OFF_RESERVED)) {
    return fail(reason, reason_size, "invalid field (reserved bytes not zero)");
  }
  if (signature_size != QV_SIGNATURE_SIZE) {
    return fail(reason, reason_size, "invalid field (signature size %u, expected %u)", (unsigned)signature_size, QV_SIGNATURE_SIZE);
  }
  if (stage_name_size == 0) {
    return fail(reason, reason_size, "invalid field (stage name is empty)");
  }
  if (stage_name_size > QV_STAGE_NAME_MAX) {
    return fail(reason, reason_size, "oversized field (stage name size %zu > %u)", stage_name_size, QV_STAGE_NAME_MAX);
  }
  if (device_profile_size == 0) {
    return fail(reason, reason_size, "invalid field (device profile id is empty)");
  }
  if (device_profile_size > QV_DEVICE_PROFILE_MAX) {
    return fail(reason, reason_size, "oversized field (device profile id size %zu > %u)", device_profile_size, QV_DEVICE_PROFILE_MAX);
  }
  if (m->next_key_id_count > QV_NEXT_KEY_IDS_MAX) {
    return fail(reason, reason_size, "oversized field (next-stage key id count %zu > %u)", m->next_key_id_count, QV_NEXT_KEY_IDS_MAX);
  }
  if (m->rollback_index_location >= QV_ROLLBACK_LOCATIONS) {
    return fail(reason, reason_size, "invalid field (rollback index location %u, maximum %u)",
                (unsigned)m->rollback_index_location, QV_ROLLBACK_LOCATIONS - 1);
  }
  if (m->image_size == 0) {
    return fail(reason, reason_size, "invalid field (image size is 0)");
  }
  return parse_verity(data, m, reason, reason_size);
}

/* Places one variable-area field at `*position`, or fails when it runs past the buffer. */
static int take_field(const uint8_t *data, size_t size, size_t *position, size_t field_size, const char *name,
                      const uint8_t **field, char *reason, size_t reason_size) {
  size_t end = *position + field_size;
  if (end > size) {
    return fail(reason, reason_size, "length out of bounds (%s ends at byte %zu, manifest has %zu)", name, end, size);
  }
  *field = data + *position;
  *position = end;
  return 0;
}

static int check_name(const uint8_t *field, size_t field_size, size_t offset, const char *name, const char *extra,
                      char *copy, char *reason, size_t reason_size) {
  long bad = first_invalid_name_byte(field, field_size, extra);
  if (bad >= 0) {
    return fail(reason, reason_size, "invalid field (%s byte 0x%02x at offset %zu)", name, field[bad], offset + (size_t)bad);
  }
  memcpy(copy, field, field_size);
  copy[field_size] = '\0';
  return 0;
}

static int check_key_ids_unique(const struct qv_manifest *m, char *reason, size_t reason_size) {
  for (size_t i = 0; i < m->next_key_id_count; i++) {
    for (size_t j = i + 1; j < m->next_key_id_count; j++) {
      if (memcmp(m->next_key_ids + i * QV_KEY_ID_SIZE, m->next_key_ids + j * QV_KEY_ID_SIZE, QV_KEY_ID_SIZE) == 0) {
        return fail(reason, reason_size, "invalid field (duplicate next-stage key id)");
      }
    }
  }
  return 0;
}

/* Places the variable area, the signature, and checks the names. */
static int parse_body(const uint8_t *data, size_t size, struct qv_manifest *m, char *reason, size_t reason_size) {
  size_t position = QV_HEADER_SIZE;
  size_t stage_name_size = data[QV_OFF_STAGE_NAME_SIZE];
  size_t device_profile_size = data[QV_OFF_DEVICE_PROFILE_SIZE];
  size_t salt_size = m->has_verity ? m->verity.salt_size : 0;
  const uint8_t *stage_name = NULL;
  const uint8_t *device_profile = NULL;
  const uint8_t *salt = NULL;
  size_t signed_size = read_be32(data + QV_OFF_SIGNED_SIZE);

  if (take_field(data, size, &position, stage_name_size, "stage name", &stage_name, reason, reason_size) != 0 ||
      take_field(data, size, &position, device_profile_size, "device profile id", &device_profile, reason, reason_size) != 0 ||
      take_field(data, size, &position, salt_size, "verity salt", &salt, reason, reason_size) != 0 ||
      take_field(data, size, &position, m->next_key_id_count * QV_KEY_ID_SIZE, "next-stage key ids", &m->next_key_ids,
                 reason, reason_size) != 0) {
    return -1;
  }
  m->verity.salt = salt;

  if (signed_size != position) {
    return fail(reason, reason_size, "invalid field (signed size %zu, fields end at %zu)", signed_size, position);
  }
  if (size < signed_size + QV_SIGNATURE_SIZE) {
    return fail(reason, reason_size, "truncated manifest (signature ends at byte %zu, manifest has %zu)",
                signed_size + QV_SIGNATURE_SIZE, size);
  }
  if (size > signed_size + QV_SIGNATURE_SIZE) {
    return fail(reason, reason_size, "trailing data (signature ends at byte %zu, manifest has %zu)",
                signed_size + QV_SIGNATURE_SIZE, size);
  }
  m->signed_data = data;
  m->signed_size = signed_size;
  m->signature = data + signed_size;
  m->signature_size = QV_SIGNATURE_SIZE;

  if (check_name(stage_name, stage_name_size, QV_HEADER_SIZE, "stage name", "_-", m->stage_name, reason, reason_size) != 0 ||
      check_name(device_profile, device_profile_size, QV_HEADER_SIZE + stage_name_size, "device profile id", "._-",
                 m->device_profile, reason, reason_size) != 0) {
    return -1;
  }
  return check_key_ids_unique(m, reason, reason_size);
}

int qv_manifest_parse(const uint8_t *data, size_t size, struct qv_manifest *manifest, char *reason, size_t reason_size) {
  memset(manifest, 0, sizeof(*manifest));

  if (size > QV_MANIFEST_MAX_SIZE) {
    return fail(reason, reason_size, "manifest too large (%zu bytes, limit %u)", size, QV_MANIFEST_MAX_SIZE);
  }
  if (size < QV_OFF_FLAGS) {
    return fail(reason, reason_size, "truncated manifest (%zu bytes, header is %u)", size, QV_HEADER_SIZE);
  }
  if (memcmp(data + QV_OFF_MAGIC, QV_MANIFEST_MAGIC, QV_MANIFEST_MAGIC_SIZE) != 0) {
    return fail(reason, reason_size, "bad magic");
  }
  uint32_t version = read_be32(data + QV_OFF_FORMAT_VERSION);
  if (version != QV_FORMAT_VERSION) {
    return fail(reason, reason_size, "unsupported format version %u", (unsigned)version);
  }
  if (size < QV_HEADER_SIZE) {
    return fail(reason, reason_size, "truncated manifest (%zu bytes, header is %u)", size, QV_HEADER_SIZE);
  }

  if (parse_header(data, manifest, reason, reason_size) != 0) return -1;
  return parse_body(data, size, manifest, reason, reason_size);
}
