/**
 * The one error class of qwamos-build. Every failure that a user can act on
 * is a QwamosError whose `code` names the kind of failure, so that callers
 * and `--json` output can branch on it without parsing messages.
 */

export type ErrorCode =
  /** Command-line usage is invalid: unknown option, missing argument. */
  | 'USAGE'
  /** A file or value given as input does not parse or does not fit its schema. */
  | 'INPUT_INVALID'
  /** A file, device profile, recipe or key named as input does not exist. */
  | 'INPUT_NOT_FOUND'
  /** A downloaded or cached input does not have the SHA-256 the lockfile pins. */
  | 'CHECKSUM_MISMATCH'
  /** `--offline` was given and an input is not in the download cache. */
  | 'OFFLINE_MISSING'
  /** A host program the build needs is not installed. */
  | 'TOOL_MISSING'
  /** A host program ran and exited with a failure status. */
  | 'COMMAND_FAILED'
  /** The final kernel .config lacks a requested option or breaks a requirement rule. */
  | 'KCONFIG_CHECK_FAILED'
  /** The kernel compile failed. */
  | 'KERNEL_BUILD_FAILED'
  /** The QEMU boot test did not reach the runtime marker. */
  | 'BOOT_TEST_FAILED'
  /** A write failed because the file system is full. */
  | 'DISK_FULL'
  /** An image or manifest failed verification (signature, digest, tree). */
  | 'VERIFY_FAILED'
  /** A value does not fit a format limit (size, length, page size). */
  | 'LIMIT_EXCEEDED'
  /** APT cannot find a pinned Debian package version: its package lists are missing or stale, or the archive dropped that version. */
  | 'PACKAGE_UNAVAILABLE'
  /** A check before flashing failed: wrong product, locked bootloader, image too large, checksum or verification. */
  | 'FLASH_CHECK_FAILED'
  /** Writing to a phone failed or was interrupted; the message names the partition. */
  | 'FLASH_FAILED';

/** Exit status per error code: 2 for invalid usage or input, 1 for failures. */
const EXIT_STATUS: Record<ErrorCode, 1 | 2> = {
  FLASH_CHECK_FAILED: 1,
  FLASH_FAILED: 1,
  PACKAGE_UNAVAILABLE: 1,
  USAGE: 2,
  INPUT_INVALID: 2,
  INPUT_NOT_FOUND: 2,
  LIMIT_EXCEEDED: 2,
  CHECKSUM_MISMATCH: 1,
  OFFLINE_MISSING: 1,
  TOOL_MISSING: 1,
  COMMAND_FAILED: 1,
  KCONFIG_CHECK_FAILED: 1,
  KERNEL_BUILD_FAILED: 1,
  BOOT_TEST_FAILED: 1,
  DISK_FULL: 1,
  VERIFY_FAILED: 1,
};

export interface QwamosErrorOptions {
  /** Extra lines shown under the message, such as the failing compiler lines. */
  details?: string[];
  /** Structured data for `--json` output. */
  data?: Record<string, unknown>;
  cause?: unknown;
}

export class QwamosError extends Error {
  readonly code: ErrorCode;
  readonly details: string[];
  readonly data: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: QwamosErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = 'QwamosError';
    this.code = code;
    this.details = options.details ?? [];
    this.data = options.data ?? {};
  }

  get exitStatus(): 1 | 2 {
    return EXIT_STATUS[this.code];
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, details: this.details, ...this.data };
  }
}

export function isQwamosError(error: unknown, code?: ErrorCode): error is QwamosError {
  return error instanceof QwamosError && (code === undefined || error.code === code);
}
