/**
 * One row of the `qwamos-build verify` report: a boot stage, the checks it
 * passed and the failures it has. Every check runs through runCheck, which
 * turns a QwamosError into a named failure, so that one failing check does
 * not hide the others of the same stage.
 */
import { QwamosError } from '../core/errors.js';

/**
 * A failed check. `kind` names the rule and `reason` is one line with the
 * values. Manifest checks use the reasons of qwamos-verify ('bad
 * signature', 'digest mismatch', 'rollback (index 1 < stored 5)'), AVB
 * checks the names of AvbFailureReason ('signature', 'image_digest') with
 * the verifier's message, and the checks of the build output itself add
 * 'cannot read', 'invalid public key', 'certificate invalid', 'image size
 * mismatch', 'embedded key mismatch', 'initramfs invalid', 'verity
 * parameters mismatch', 'manifest partition mismatch', 'next-stage key not
 * certified', 'next-stage key missing', 'boot config mismatch',
 * 'descriptor missing', 'verification disabled' and 'vbmeta missing'.
 */
export interface StageFailure {
  kind: string;
  reason: string;
}

export interface StageRow {
  /** 'vbmeta' or the stage name of the manifest. */
  stage: string;
  status: 'ok' | 'FAIL';
  /**
   * Lowercase hex key id of the signer: the manifest's signer key id
   * (SHA-256 of the ML-DSA-87 SubjectPublicKeyInfo), or for vbmeta the
   * SHA-256 of the embedded AVB public key blob.
   */
  signerKeyId?: string;
  /** Decimal string, because rollback indexes are unsigned 64-bit. */
  rollbackIndex?: string;
  rollbackIndexLocation?: number;
  /** The image SHA-512 that the manifest states, lowercase hex. */
  imageSha512?: string;
  /** The dm-verity root digest that the manifest states, lowercase hex. */
  verityRootDigest?: string;
  /** Names of the checks that passed, in the order they ran. */
  checks: string[];
  /** Checks that did not run, each with the reason, such as 'rollback (no --counters)'. */
  skipped: string[];
  failures: StageFailure[];
}

export function newRow(stage: string): StageRow {
  return { stage, status: 'ok', checks: [], skipped: [], failures: [] };
}

/** Throws the VERIFY_FAILED error that runCheck records as a failure with `reason`. */
export function checkFailed(reason: string, kind?: string): never {
  throw new QwamosError('VERIFY_FAILED', reason, { data: { reason, ...(kind === undefined ? {} : { kind }) } });
}

/**
 * Returns the failure a QwamosError stands for. The reason is the error's
 * `data.reason` when it has one, as the manifest parser and verifier set
 * it, and its message otherwise. The kind is `data.kind`, or the reason up
 * to its first ' ('.
 */
export function failureOf(error: QwamosError): StageFailure {
  const reason = typeof error.data.reason === 'string' ? error.data.reason : error.message;
  if (typeof error.data.kind === 'string') return { kind: error.data.kind, reason };
  if (typeof error.data.reason !== 'string' && error.code === 'INPUT_NOT_FOUND') return { kind: 'cannot read', reason };
  return { kind: reason.split(' (')[0] ?? reason, reason };
}

/**
 * Runs one check of `row`. Records `name` as passed when `check` returns,
 * records a failure when it throws a QwamosError, and rethrows any other
 * error. Returns whether the check passed.
 */
export async function runCheck(row: StageRow, name: string, check: () => unknown): Promise<boolean> {
  try {
    await check();
    row.checks.push(name);
    return true;
  } catch (error) {
    if (!(error instanceof QwamosError)) throw error;
    row.failures.push(failureOf(error));
    return false;
  }
}

export function addFailure(row: StageRow, kind: string, reason: string): void {
  row.failures.push({ kind, reason });
}

/** Sets the row's status from its failures and returns the row. */
export function finishRow(row: StageRow): StageRow {
  row.status = row.failures.length === 0 ? 'ok' : 'FAIL';
  return row;
}
