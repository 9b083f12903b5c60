/**
 * Rollback counter store, the record that qwamos-verify reads and raises at
 * boot. In QEMU it is a small dedicated virtio disk in place of a phone's
 * RPMB. Real phones need the TEE or RPMB, because anyone who can write the
 * phone's flash can reset counters kept in ordinary storage.
 *
 * Layout (verifier/counters.h holds the same), all integers big-endian:
 *
 *   offset size field
 *        0    8 magic "QWAMOSRB"
 *        8    4 version (1)
 *       12    4 slot count (32)
 *       16  256 32 rollback counters, u64 each, slot i at 16 + 8 * i
 *      272   32 SHA-256 of bytes 0 to 271
 *
 * The record is 304 bytes; the file or disk may be longer and the rest is
 * ignored.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { writeFileAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import { ROLLBACK_LOCATIONS } from './manifest.js';

export const COUNTER_STORE_MAGIC = Buffer.from('QWAMOSRB', 'latin1');
export const COUNTER_STORE_VERSION = 1;
export const COUNTER_STORE_RECORD_SIZE = 304;
/** Default size of a new store file: 8 sectors of 512 bytes, so it can back a virtio disk. */
export const COUNTER_STORE_FILE_SIZE = 4096;

const OFFSET = { magic: 0, version: 8, slotCount: 12, slots: 16, checksum: 272 } as const;
const U64_MAX = (1n << 64n) - 1n;

/** Encodes 32 counters as a counter store record. */
export function encodeCounterStore(counters: readonly bigint[]): Buffer {
  if (counters.length !== ROLLBACK_LOCATIONS) {
    throw new QwamosError('INPUT_INVALID', `a counter store has ${ROLLBACK_LOCATIONS} counters, but ${counters.length} were given`);
  }
  const record = Buffer.alloc(COUNTER_STORE_RECORD_SIZE);

  COUNTER_STORE_MAGIC.copy(record, OFFSET.magic);
  record.writeUInt32BE(COUNTER_STORE_VERSION, OFFSET.version);
  record.writeUInt32BE(ROLLBACK_LOCATIONS, OFFSET.slotCount);
  counters.forEach((value, slot) => {
    if (value < 0n || value > U64_MAX) throw new QwamosError('INPUT_INVALID', `counter ${slot} is ${value}; counters are unsigned 64-bit integers`);
    record.writeBigUInt64BE(value, OFFSET.slots + 8 * slot);
  });
  createHash('sha256').update(record.subarray(0, OFFSET.checksum)).digest().copy(record, OFFSET.checksum);
  return record;
}

function rejectStore(source: string, reason: string): never {
  throw new QwamosError('VERIFY_FAILED', `${source}: ${reason}; write a new store with createCounterStore only when provisioning a device, because that resets rollback protection`, {
    data: { reason, source },
  });
}

/**
 * Decodes and checks a counter store record; `source` names it in errors.
 * Throws VERIFY_FAILED with the same reasons as qwamos-verify.
 */
export function decodeCounterStore(bytes: Uint8Array, source = 'counter store'): bigint[] {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

  if (data.length < COUNTER_STORE_RECORD_SIZE) rejectStore(source, `counter store invalid (${data.length} bytes, needs ${COUNTER_STORE_RECORD_SIZE})`);
  if (!data.subarray(0, 8).equals(COUNTER_STORE_MAGIC)) rejectStore(source, 'counter store invalid (bad magic)');
  const version = data.readUInt32BE(OFFSET.version);
  if (version !== COUNTER_STORE_VERSION) rejectStore(source, `counter store invalid (unsupported version ${version})`);
  const slotCount = data.readUInt32BE(OFFSET.slotCount);
  if (slotCount !== ROLLBACK_LOCATIONS) rejectStore(source, `counter store invalid (slot count ${slotCount}, expected ${ROLLBACK_LOCATIONS})`);
  const checksum = createHash('sha256').update(data.subarray(0, OFFSET.checksum)).digest();
  if (!checksum.equals(data.subarray(OFFSET.checksum, COUNTER_STORE_RECORD_SIZE))) rejectStore(source, 'counter store invalid (checksum mismatch)');

  return Array.from({ length: ROLLBACK_LOCATIONS }, (_, slot) => data.readBigUInt64BE(OFFSET.slots + 8 * slot));
}

/**
 * Writes a new counter store file of `fileSize` bytes with all counters 0
 * (or `counters`), for a QEMU counter disk. Provisioning only: it resets
 * rollback protection.
 */
export async function createCounterStore(path: string, options: { counters?: readonly bigint[]; fileSize?: number } = {}): Promise<void> {
  const fileSize = options.fileSize ?? COUNTER_STORE_FILE_SIZE;
  if (!Number.isInteger(fileSize) || fileSize < COUNTER_STORE_RECORD_SIZE) {
    throw new QwamosError('INPUT_INVALID', `counter store file size ${fileSize} is too small; it must be at least ${COUNTER_STORE_RECORD_SIZE} bytes`);
  }
  const file = Buffer.alloc(fileSize);
  encodeCounterStore(options.counters ?? new Array<bigint>(ROLLBACK_LOCATIONS).fill(0n)).copy(file);
  await writeFileAtomic(path, file);
}

/** Reads and checks the counter store at the start of the file or device at `path`. */
export async function readCounterStore(path: string): Promise<bigint[]> {
  const handle = await open(path, 'r').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `counter store ${path} does not exist; create it with createCounterStore`);
    throw error;
  });
  try {
    const record = Buffer.alloc(COUNTER_STORE_RECORD_SIZE);
    const { bytesRead } = await handle.read(record, 0, COUNTER_STORE_RECORD_SIZE, 0);
    return decodeCounterStore(record.subarray(0, bytesRead), `counter store ${path}`);
  } finally {
    await handle.close();
  }
}

/** Writes the counters in place at the start of `path` and waits for fsync, as qwamos-verify does. */
export async function writeCounterStore(path: string, counters: readonly bigint[]): Promise<void> {
  const record = encodeCounterStore(counters);
  const handle = await open(path, 'r+');
  try {
    await handle.write(record, 0, record.length, 0);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

