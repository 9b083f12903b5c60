/**
 * The signing-time anti-rollback ledger: a JSON file beside the keys that
 * records, for each (product, device, rollback index location), the last
 * rollback index signed. Signing a lower index is a rollback and is
 * rejected unless the caller allows it and signs with a dev key.
 *
 * File `rollback-ledger.json` in the key folder:
 *   { "format": "qwamos-rollback-ledger-v1",
 *     "entries": [ { "product", "device", "location", "rollbackIndex",
 *                    "keyId", "dev", "signedAt" } ] }
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import { withLockFile } from './keys-lock.js';

export const LEDGER_FILE = 'rollback-ledger.json';
export const LEDGER_FORMAT = 'qwamos-rollback-ledger-v1';

export interface LedgerEntry {
  product: string;
  device: string;
  /** AVB rollback index location (a slot number of the device's rollback counters). */
  location: number;
  /** Last rollback index signed for this product, device and location. */
  rollbackIndex: number;
  /** Id of the key that signed it. */
  keyId: string;
  dev: boolean;
  /** ISO 8601 UTC time of the signing. */
  signedAt: string;
}

export interface SigningRequest {
  product: string;
  device: string;
  location: number;
  rollbackIndex: number;
  /** The signing key; only `id` and `dev` are used. */
  key: { id: string; dev: boolean };
  /** Allow an index below the last one signed; accepted with a dev key only. */
  allowRollback?: boolean;
  /** Signing time; defaults to now. */
  now?: Date;
}

export interface RecordResult {
  entry: LedgerEntry;
  /** The rollback index recorded before this signing, if any. */
  previousIndex: number | undefined;
}

/** Returns the ledger path for the key store folder `keyDir`. */
export function ledgerPath(keyDir: string): string {
  return path.join(path.resolve(keyDir), LEDGER_FILE);
}

function invalidLedger(file: string, problem: string): QwamosError {
  return new QwamosError('INPUT_INVALID', `${file}: ${problem}; restore the ledger from a backup (deleting it drops rollback protection for every product)`);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function parseEntry(value: unknown, index: number, file: string): LedgerEntry {
  const where = `entries[${index}]`;
  if (typeof value !== 'object' || value === null) throw invalidLedger(file, `${where} must be an object`);
  const entry = value as Record<string, unknown>;

  for (const field of ['product', 'device', 'keyId', 'signedAt']) {
    if (typeof entry[field] !== 'string' || entry[field] === '') throw invalidLedger(file, `${where}.${field} must be a non-empty string`);
  }
  if (!isNonNegativeInteger(entry.location)) throw invalidLedger(file, `${where}.location must be a non-negative integer`);
  if (!isNonNegativeInteger(entry.rollbackIndex)) throw invalidLedger(file, `${where}.rollbackIndex must be a non-negative integer`);
  if (typeof entry.dev !== 'boolean') throw invalidLedger(file, `${where}.dev must be true or false`);
  return entry as unknown as LedgerEntry;
}

/** Reads the ledger of `keyDir`; a missing file is an empty ledger. */
export async function readLedger(keyDir: string): Promise<LedgerEntry[]> {
  const file = ledgerPath(keyDir);
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (text === undefined) return [];

  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw invalidLedger(file, `invalid JSON (${(error as Error).message})`);
  }
  const root = document as { format?: unknown; entries?: unknown } | null;
  if (root?.format !== LEDGER_FORMAT) throw invalidLedger(file, `field 'format' must be '${LEDGER_FORMAT}'`);
  if (!Array.isArray(root.entries)) throw invalidLedger(file, `field 'entries' must be a list`);
  return root.entries.map((value, index) => parseEntry(value, index, file));
}

function matches(entry: LedgerEntry, request: Pick<SigningRequest, 'product' | 'device' | 'location'>): boolean {
  return entry.product === request.product && entry.device === request.device && entry.location === request.location;
}

/** Returns the last rollback index signed for the product, device and location, or undefined. */
export async function lastRollbackIndex(keyDir: string, product: string, device: string, location: number): Promise<number | undefined> {
  const entries = await readLedger(keyDir);
  return entries.find((entry) => matches(entry, { product, device, location }))?.rollbackIndex;
}

function checkRequest(request: SigningRequest): void {
  if (request.product === '' || request.device === '') throw new QwamosError('USAGE', 'the rollback ledger needs a non-empty product and device name');
  if (!isNonNegativeInteger(request.location)) throw new QwamosError('INPUT_INVALID', `rollback index location ${request.location} must be a non-negative integer`);
  if (!isNonNegativeInteger(request.rollbackIndex)) {
    throw new QwamosError('LIMIT_EXCEEDED', `rollback index ${request.rollbackIndex} must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}`);
  }
}

function rejectRollback(request: SigningRequest, last: number, file: string): never {
  const subject = `product '${request.product}', device '${request.device}', rollback index location ${request.location}`;
  const fix = request.allowRollback && !request.key.dev
    ? '--allow-rollback is accepted only with dev keys, because a device that took the newer image would reject this one'
    : `sign with rollback index ${last} or higher, or (dev keys only) pass --allow-rollback`;
  throw new QwamosError('INPUT_INVALID', `rollback index ${request.rollbackIndex} is below ${last}, the last index signed for ${subject} (ledger ${file}); ${fix}`, {
    data: { product: request.product, device: request.device, location: request.location, requestedIndex: request.rollbackIndex, lastIndex: last },
  });
}

/**
 * Records that `request.rollbackIndex` is being signed. Throws when the
 * index is below the last one recorded for the same product, device and
 * location, unless `allowRollback` is set and the key is a dev key. Call
 * it before the signature is published: recording first is the safe order.
 */
export async function recordSigning(keyDir: string, request: SigningRequest): Promise<RecordResult> {
  checkRequest(request);
  const file = ledgerPath(keyDir);
  await stat(path.dirname(file)).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `key folder ${path.dirname(file)} does not exist; the rollback ledger is kept beside the keys, so pass the key store folder`);
    throw error;
  });

  return withLockFile(`${file}.lock`, async () => {
    const entries = await readLedger(keyDir);
    const existing = entries.find((entry) => matches(entry, request));
    const previousIndex = existing?.rollbackIndex;

    if (previousIndex !== undefined && request.rollbackIndex < previousIndex && !(request.allowRollback && request.key.dev)) {
      rejectRollback(request, previousIndex, file);
    }

    const entry: LedgerEntry = {
      product: request.product,
      device: request.device,
      location: request.location,
      rollbackIndex: request.rollbackIndex,
      keyId: request.key.id,
      dev: request.key.dev,
      signedAt: (request.now ?? new Date()).toISOString(),
    };
    const updated = [...entries.filter((candidate) => candidate !== existing), entry];
    updated.sort((a, b) => a.product.localeCompare(b.product) || a.device.localeCompare(b.device) || a.location - b.location);

    await writeFileAtomic(file, `${JSON.stringify({ format: LEDGER_FORMAT, entries: updated }, null, 2)}\n`, 0o644);
    return { entry, previousIndex };
  });
}
