/*
 * qwamos-verify: checks one boot stage against its signed stage manifest
 * before the initramfs uses it. Any failure prints exactly one line,
 * "qwamos: verification failed: STAGE: REASON", on standard error and exits
 * non-zero, so the init script halts. On success it prints shell variable
 * assignments on standard output: the values the init script may use, all
 * of them checked here.
 *
 * Exit status: 0 verified, 1 verification failed, 2 invalid arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "counters.h"
#include "image.h"
#include "manifest.h"
#include "mldsa.h"

#define MAX_PUBLIC_KEYS 8
#define EXIT_VERIFY_FAILED 1
#define EXIT_INVALID_ARGUMENTS 2

struct options {
  const char *stage;
  const char *manifest_path;
  const char *image_path;
  const char *counters_path;
  const char *device_profile;
  const char *public_key_paths[MAX_PUBLIC_KEYS];
  size_t public_key_count;
  int no_counters;
  int verity_only;
  int manifest_partition;
};

static const char USAGE[] =
  "usage: qwamos-verify --stage NAME --manifest FILE --image FILE_OR_DEVICE --pubkey FILE [--pubkey FILE]...\n"
  "                     (--counters FILE_OR_DEVICE | --no-counters) [--device-profile ID] [--verity-only]\n"
  "\n"
  "  --stage NAME           stage the manifest must name; also selects the signature context\n"
  "  --manifest FILE        signed stage manifest\n"
  "  --manifest-partition   --manifest is a partition: the manifest, then zero bytes up to its end\n"
  "  --image PATH           stage image file or block device\n"
  "  --pubkey FILE          raw ML-DSA-87 public key (2592 bytes) trusted for this stage; up to 8\n"
  "  --counters PATH        rollback counter store; the stage's counter is raised after success\n"
  "  --no-counters          skip the rollback check (tests and development only)\n"
  "  --device-profile ID    device profile id the manifest must name\n"
  "  --verity-only          for dm-verity images: check the root hash block instead of hashing the whole image\n";

static const char *failing_stage = "unknown";

static uint8_t manifest_buffer[QV_MANIFEST_MAX_SIZE + 1];
static uint8_t public_keys[MAX_PUBLIC_KEYS][QV_PUBLIC_KEY_SIZE];

/* Prints the console line for a failed verification and exits with `status`. */
_Noreturn static void halt(int status, const char *format, ...) {
  char reason[QV_REASON_SIZE];
  va_list args;

  va_start(args, format);
  vsnprintf(reason, sizeof(reason), format, args);
  va_end(args);
  fprintf(stderr, "qwamos: verification failed: %s: %s\n", failing_stage, reason);
  exit(status);
}

static void parse_options(int argc, char **argv, struct options *options) {
  enum { OPT_STAGE = 256, OPT_MANIFEST, OPT_IMAGE, OPT_PUBKEY, OPT_COUNTERS, OPT_NO_COUNTERS, OPT_DEVICE_PROFILE,
         OPT_VERITY_ONLY, OPT_MANIFEST_PARTITION, OPT_HELP };
  static const struct option long_options[] = {
    { "stage", required_argument, NULL, OPT_STAGE },
    { "manifest", required_argument, NULL, OPT_MANIFEST },
    { "image", required_argument, NULL, OPT_IMAGE },
    { "pubkey", required_argument, NULL, OPT_PUBKEY },
    { "counters", required_argument, NULL, OPT_COUNTERS },
    { "no-counters", no_argument, NULL, OPT_NO_COUNTERS },
    { "device-profile", required_argument, NULL, OPT_DEVICE_PROFILE },
    { "verity-only", no_argument, NULL, OPT_VERITY_ONLY },
    { "manifest-partition", no_argument, NULL, OPT_MANIFEST_PARTITION },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
  };
  int option;

  memset(options, 0, sizeof(*options));
  opterr = 0;
  while ((option = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
    switch (option) {
    case OPT_STAGE: options->stage = optarg; failing_stage = optarg; break;
    case OPT_MANIFEST: options->manifest_path = optarg; break;
    case OPT_IMAGE: options->image_path = optarg; break;
    case OPT_COUNTERS: options->counters_path = optarg; break;
    case OPT_NO_COUNTERS: options->no_counters = 1; break;
    case OPT_DEVICE_PROFILE: options->device_profile = optarg; break;
    case OPT_VERITY_ONLY: options->verity_only = 1; break;
    case OPT_MANIFEST_PARTITION: options->manifest_partition = 1; break;
    case OPT_HELP: fputs(USAGE, stdout); exit(0);
    case OPT_PUBKEY:
      if (options->public_key_count == MAX_PUBLIC_KEYS) {
        halt(EXIT_INVALID_ARGUMENTS, "invalid arguments (more than %d --pubkey options)", MAX_PUBLIC_KEYS);
      }
      options->public_key_paths[options->public_key_count++] = optarg;
      break;
    default:
      halt(EXIT_INVALID_ARGUMENTS, "invalid arguments (unknown option or missing value: %s)", argv[optind - 1]);
    }
  }

  if (optind < argc) halt(EXIT_INVALID_ARGUMENTS, "invalid arguments (unexpected argument %s)", argv[optind]);
  if (options->stage == NULL) halt(EXIT_INVALID_ARGUMENTS, "invalid arguments (--stage is required)");
  if (!qv_is_valid_stage_name(options->stage)) {
    failing_stage = "unknown";
    halt(EXIT_INVALID_ARGUMENTS, "invalid arguments (--stage must be 1 to %u of a-z 0-9 _ -, starting with a letter or digit)",
         QV_STAGE_NAME_MAX);
  }
  if (options->manifest_path == NULL) halt(EXIT_INVALID_ARGUMENTS, "invalid arguments (--manifest is required)");
  if (options->image_path == NULL) halt(EXIT_INVALID_ARGUMENTS, "invalid arguments (--image is required)");
  if (options->public_key_count == 0) halt(EXIT_INVALID_ARGUMENTS, "invalid arguments (--pubkey is required)");
  if ((options->counters_path == NULL) == (options->no_counters == 0)) {
    halt(EXIT_INVALID_ARGUMENTS, "invalid arguments (give exactly one of --counters and --no-counters)");
  }
  if (options->device_profile != NULL && !qv_is_valid_device_profile(options->device_profile)) {
    halt(EXIT_INVALID_ARGUMENTS, "invalid arguments (--device-profile is not a valid device profile id)");
  }
}

/* Reads a whole small file into `buffer`; returns its size, or halts naming `what`. */
static size_t read_small_file(const char *path, uint8_t *buffer, size_t capacity, const char *what) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  size_t size = 0;

  if (fd < 0) halt(EXIT_VERIFY_FAILED, "cannot read %s (%s: %s)", what, path, strerror(errno));
  while (size < capacity) {
    ssize_t n = read(fd, buffer + size, capacity - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) halt(EXIT_VERIFY_FAILED, "cannot read %s (%s: %s)", what, path, strerror(errno));
    if (n == 0) break;
    size += (size_t)n;
  }
  close(fd);
  return size;
}

static void load_public_keys(const struct options *options) {
  static uint8_t key_buffer[QV_PUBLIC_KEY_SIZE + 1];

  for (size_t i = 0; i < options->public_key_count; i++) {
    const char *path = options->public_key_paths[i];
    size_t size = read_small_file(path, key_buffer, sizeof(key_buffer), "public key");
    if (size != QV_PUBLIC_KEY_SIZE) {
      halt(EXIT_VERIFY_FAILED, "invalid public key (%s: %s%zu bytes, expected %u)", path,
           size > QV_PUBLIC_KEY_SIZE ? "more than " : "", size > QV_PUBLIC_KEY_SIZE ? (size_t)QV_PUBLIC_KEY_SIZE : size,
           QV_PUBLIC_KEY_SIZE);
    }
    memcpy(public_keys[i], key_buffer, QV_PUBLIC_KEY_SIZE);
  }
}

/*
 * A manifest partition contains the manifest followed by zero bytes, because a
 * disk cannot end at an arbitrary byte. Returns the manifest's own size,
 * signed size + signature size (header offsets 16 and 20, u32 big-endian),
 * when it fits in `size` and every byte after it is zero; otherwise returns
 * `size` unchanged so that the parser reports what is wrong.
 */
static size_t trim_partition_padding(const uint8_t *buffer, size_t size) {
  if (size < 24) return size;

  uint64_t signed_size = ((uint64_t)buffer[16] << 24) | ((uint64_t)buffer[17] << 16) | ((uint64_t)buffer[18] << 8) | buffer[19];
  uint64_t signature_size = ((uint64_t)buffer[20] << 24) | ((uint64_t)buffer[21] << 16) | ((uint64_t)buffer[22] << 8) | buffer[23];
  uint64_t declared = signed_size + signature_size;
  if (declared == 0 || declared > size) return size;

  for (size_t i = (size_t)declared; i < size; i++) {
    if (buffer[i] != 0) return size;
  }
  return (size_t)declared;
}

static void load_manifest(const char *path, int partition, struct qv_manifest *manifest) {
  char reason[QV_REASON_SIZE];
  size_t capacity = partition ? QV_MANIFEST_MAX_SIZE : sizeof(manifest_buffer);
  size_t size = read_small_file(path, manifest_buffer, capacity, "manifest");

  if (partition) size = trim_partition_padding(manifest_buffer, size);
  if (size > QV_MANIFEST_MAX_SIZE) {
    struct stat status;
    long long reported = stat(path, &status) == 0 ? (long long)status.st_size : (long long)size;
    halt(EXIT_VERIFY_FAILED, "manifest too large (%lld bytes, limit %u)", reported, QV_MANIFEST_MAX_SIZE);
  }
  if (qv_manifest_parse(manifest_buffer, size, manifest, reason, sizeof(reason)) != 0) {
    halt(EXIT_VERIFY_FAILED, "%s", reason);
  }
}

/* Returns the index of the trusted key whose id the manifest names, or halts with "unknown key". */
static size_t find_signer_key(const struct options *options, const struct qv_manifest *manifest) {
  uint8_t key_id[QV_KEY_ID_SIZE];

  for (size_t i = 0; i < options->public_key_count; i++) {
    qv_key_id(public_keys[i], key_id);
    if (memcmp(key_id, manifest->signer_key_id, QV_KEY_ID_SIZE) == 0) return i;
  }
  halt(EXIT_VERIFY_FAILED, "unknown key");
  return 0;
}

static void check_signature(const struct options *options, const struct qv_manifest *manifest) {
  uint8_t context[QV_CONTEXT_MAX];
  size_t key_index = find_signer_key(options, manifest);
  size_t context_size = qv_signature_context(options->stage, context, sizeof(context));

  if (!qv_mldsa87_verify(manifest->signature, manifest->signature_size, manifest->signed_data, manifest->signed_size,
                         context, context_size, public_keys[key_index])) {
    halt(EXIT_VERIFY_FAILED, "bad signature");
  }
}

/* Opens the counter store and halts on rollback; returns the open descriptor, or -1 with --no-counters. */
static int check_rollback(const struct options *options, const struct qv_manifest *manifest, struct qv_counters *counters) {
  char reason[QV_REASON_SIZE];
  int fd;

  if (options->no_counters) return -1;
  fd = open(options->counters_path, O_RDWR | O_CLOEXEC);
  if (fd < 0) halt(EXIT_VERIFY_FAILED, "counter store read failed (%s: %s)", options->counters_path, strerror(errno));
  if (qv_counters_read(fd, counters, reason, sizeof(reason)) != 0) halt(EXIT_VERIFY_FAILED, "%s", reason);

  uint64_t stored = counters->slots[manifest->rollback_index_location];
  if (manifest->rollback_index < stored) {
    halt(EXIT_VERIFY_FAILED, "rollback (index %llu < stored %llu)", (unsigned long long)manifest->rollback_index,
         (unsigned long long)stored);
  }
  return fd;
}

static void check_image(const struct options *options, const struct qv_manifest *manifest) {
  char reason[QV_REASON_SIZE];
  int fd = open(options->image_path, O_RDONLY | O_CLOEXEC);

  if (fd < 0) halt(EXIT_VERIFY_FAILED, "cannot read image (%s: %s)", options->image_path, strerror(errno));
  if (qv_image_check_size(fd, manifest->image_size, reason, sizeof(reason)) != 0) halt(EXIT_VERIFY_FAILED, "%s", reason);
  if (!options->verity_only &&
      qv_image_check_sha512(fd, manifest->image_size, manifest->image_sha512, reason, sizeof(reason)) != 0) {
    halt(EXIT_VERIFY_FAILED, "%s", reason);
  }
  if (manifest->has_verity && qv_image_check_verity_root(fd, &manifest->verity, reason, sizeof(reason)) != 0) {
    halt(EXIT_VERIFY_FAILED, "%s", reason);
  }
  close(fd);
}

/* Raises the counter of the manifest's slot to its rollback index, after every other check passed. */
static void raise_counter(int fd, const struct qv_manifest *manifest, struct qv_counters *counters) {
  char reason[QV_REASON_SIZE];

  if (fd < 0) return;
  if (manifest->rollback_index > counters->slots[manifest->rollback_index_location]) {
    counters->slots[manifest->rollback_index_location] = manifest->rollback_index;
    if (qv_counters_write(fd, counters, reason, sizeof(reason)) != 0) halt(EXIT_VERIFY_FAILED, "%s", reason);
  }
  close(fd);
}

static void print_hex(const uint8_t *bytes, size_t size) {
  for (size_t i = 0; i < size; i++) printf("%02x", bytes[i]);
}

/* The dm table carries the path between spaces and the output is eval'd, so only plain path characters pass. */
static int is_plain_path(const char *path) {
  if (*path == '\0') return 0;
  for (const char *p = path; *p != '\0'; p++) {
    if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+:-", *p) == NULL) return 0;
  }
  return 1;
}

static void print_verity(const char *device, const struct qv_verity *v) {
  const char *algorithm = v->hash_algorithm == QV_VERITY_SHA256 ? "sha256" : "sha512";
  unsigned long long data_sectors = (unsigned long long)(v->data_block_count * v->data_block_size / 512);
  unsigned long long hash_start_block = (unsigned long long)(v->hash_tree_offset / v->hash_block_size);

  printf("QWAMOS_VERITY_HASH_ALGORITHM=%s\n", algorithm);
  printf("QWAMOS_VERITY_DATA_BLOCK_SIZE=%u\n", (unsigned)v->data_block_size);
  printf("QWAMOS_VERITY_HASH_BLOCK_SIZE=%u\n", (unsigned)v->hash_block_size);
  printf("QWAMOS_VERITY_DATA_BLOCKS=%llu\n", (unsigned long long)v->data_block_count);
  printf("QWAMOS_VERITY_HASH_OFFSET=%llu\n", (unsigned long long)v->hash_tree_offset);
  printf("QWAMOS_VERITY_ROOT_HASH=");
  print_hex(v->root_digest, v->root_digest_size);
  printf("\nQWAMOS_VERITY_SALT=");
  if (v->salt_size == 0) printf("-");
  print_hex(v->salt, v->salt_size);
  printf("\nQWAMOS_VERITY_TABLE='0 %llu verity 1 %s %s %u %u %llu %llu %s ", data_sectors, device, device,
         (unsigned)v->data_block_size, (unsigned)v->hash_block_size, (unsigned long long)v->data_block_count,
         hash_start_block, algorithm);
  print_hex(v->root_digest, v->root_digest_size);
  printf(" ");
  if (v->salt_size == 0) printf("-");
  print_hex(v->salt, v->salt_size);
  printf("'\n");
}

static void print_result(const struct options *options, const struct qv_manifest *manifest) {
  printf("QWAMOS_STAGE=%s\n", manifest->stage_name);
  printf("QWAMOS_DEVICE_PROFILE=%s\n", manifest->device_profile);
  printf("QWAMOS_ROLLBACK_INDEX=%llu\n", (unsigned long long)manifest->rollback_index);
  printf("QWAMOS_ROLLBACK_INDEX_LOCATION=%u\n", (unsigned)manifest->rollback_index_location);
  printf("QWAMOS_SIGNER_KEY_ID=");
  print_hex(manifest->signer_key_id, QV_KEY_ID_SIZE);
  printf("\nQWAMOS_IMAGE_SIZE=%llu\n", (unsigned long long)manifest->image_size);
  printf("QWAMOS_VERITY=%d\n", manifest->has_verity);
  if (manifest->has_verity) print_verity(options->image_path, &manifest->verity);

  if (fflush(stdout) != 0 || ferror(stdout)) halt(EXIT_VERIFY_FAILED, "cannot write the result (%s)", strerror(errno));
  fprintf(stderr, "qwamos: verified %s: rollback index %llu\n", manifest->stage_name,
          (unsigned long long)manifest->rollback_index);
}

int main(int argc, char **argv) {
  struct options options;
  struct qv_manifest manifest;
  struct qv_counters counters;

  parse_options(argc, argv, &options);
  load_public_keys(&options);
  load_manifest(options.manifest_path, options.manifest_partition, &manifest);

  if (strcmp(manifest.stage_name, options.stage) != 0) halt(EXIT_VERIFY_FAILED, "stage mismatch (manifest is for %s)", manifest.stage_name);
  if (options.device_profile != NULL && strcmp(manifest.device_profile, options.device_profile) != 0) {
    halt(EXIT_VERIFY_FAILED, "wrong device profile (manifest is for %s)", manifest.device_profile);
  }
  check_signature(&options, &manifest);
  if (options.verity_only && !manifest.has_verity) halt(EXIT_VERIFY_FAILED, "not a verity image");
  if (manifest.has_verity && !is_plain_path(options.image_path)) {
    halt(EXIT_INVALID_ARGUMENTS, "invalid arguments (--image path must use only A-Z a-z 0-9 / . _ + : - for the dm table)");
  }

  int counters_fd = check_rollback(&options, &manifest, &counters);
  check_image(&options, &manifest);
  raise_counter(counters_fd, &manifest, &counters);
  print_result(&options, &manifest);
  return 0;
}
