import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { lastRollbackIndex, LEDGER_FILE, readLedger, recordSigning, type SigningRequest } from '../../signing/ledger.js';

const DEV_KEY = { id: 'd'.repeat(64), dev: true };
const RELEASE_KEY = { id: 'a'.repeat(64), dev: false };

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-ledger-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const dir = path.join(scratch, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir);
  return dir;
}

function request(rollbackIndex: number, overrides: Partial<SigningRequest> = {}): SigningRequest {
  return { product: 'qwamos', device: 'pixel-7', location: 1, rollbackIndex, key: RELEASE_KEY, ...overrides };
}

async function rejection(promise: Promise<unknown>): Promise<QwamosError> {
  const result = await promise.then(() => undefined, (error: unknown) => error);
  expect(result).toBeInstanceOf(QwamosError);
  return result as QwamosError;
}

describe('rollback ledger', () => {
  it('records the first signing', async () => {
    const dir = await freshDir('first');
    const result = await recordSigning(dir, request(5, { now: new Date('2026-01-02T03:04:05Z') }));

    expect(result.previousIndex).toBeUndefined();
    expect(await lastRollbackIndex(dir, 'qwamos', 'pixel-7', 1)).toBe(5);
    const written = JSON.parse(await readFile(path.join(dir, LEDGER_FILE), 'utf8'));
    expect(written).toEqual({
      format: 'qwamos-rollback-ledger-v1',
      entries: [{ product: 'qwamos', device: 'pixel-7', location: 1, rollbackIndex: 5, keyId: RELEASE_KEY.id, dev: false, signedAt: '2026-01-02T03:04:05.000Z' }],
    });
  });

  it('accepts an equal or higher index', async () => {
    const dir = await freshDir('higher');
    await recordSigning(dir, request(5));
    expect((await recordSigning(dir, request(5))).previousIndex).toBe(5);
    expect((await recordSigning(dir, request(9))).previousIndex).toBe(5);
    expect(await lastRollbackIndex(dir, 'qwamos', 'pixel-7', 1)).toBe(9);
  });

  it('rejects a lower index', async () => {
    const dir = await freshDir('lower');
    await recordSigning(dir, request(7));
    const error = await rejection(recordSigning(dir, request(6)));

    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toBe(`rollback index 6 is below 7, the last index signed for product 'qwamos', device 'pixel-7', rollback index location 1 (ledger ${path.join(dir, LEDGER_FILE)}); sign with rollback index 7 or higher, or (dev keys only) pass --allow-rollback`);
    expect(error.data).toEqual({ product: 'qwamos', device: 'pixel-7', location: 1, requestedIndex: 6, lastIndex: 7 });
    expect(await lastRollbackIndex(dir, 'qwamos', 'pixel-7', 1)).toBe(7);
  });

  it('allows a rollback with a dev key', async () => {
    const dir = await freshDir('dev-rollback');
    await recordSigning(dir, request(7, { key: DEV_KEY }));
    const result = await recordSigning(dir, request(2, { key: DEV_KEY, allowRollback: true }));

    expect(result.previousIndex).toBe(7);
    expect(await lastRollbackIndex(dir, 'qwamos', 'pixel-7', 1)).toBe(2);
  });

  it('rejects a dev key without allowRollback', async () => {
    const dir = await freshDir('dev-no-flag');
    await recordSigning(dir, request(7, { key: DEV_KEY }));
    const error = await rejection(recordSigning(dir, request(2, { key: DEV_KEY })));
    expect(error.message).toContain('rollback index 2 is below 7');
  });

  it('rejects allowRollback with a release key', async () => {
    const dir = await freshDir('release-rollback');
    await recordSigning(dir, request(7));
    const error = await rejection(recordSigning(dir, request(2, { allowRollback: true })));

    expect(error.message).toBe(`rollback index 2 is below 7, the last index signed for product 'qwamos', device 'pixel-7', rollback index location 1 (ledger ${path.join(dir, LEDGER_FILE)}); --allow-rollback is accepted only with dev keys, because a device that took the newer image would reject this one`);
    expect(await lastRollbackIndex(dir, 'qwamos', 'pixel-7', 1)).toBe(7);
  });

  it('keeps locations, devices and products apart', async () => {
    const dir = await freshDir('apart');
    await recordSigning(dir, request(7));
    await recordSigning(dir, request(1, { location: 2 }));
    await recordSigning(dir, request(1, { device: 'pixel-8' }));
    await recordSigning(dir, request(1, { product: 'qwamos-lite' }));

    expect((await readLedger(dir)).map((entry) => [entry.product, entry.device, entry.location, entry.rollbackIndex])).toEqual([
      ['qwamos', 'pixel-7', 1, 7],
      ['qwamos', 'pixel-7', 2, 1],
      ['qwamos', 'pixel-8', 1, 1],
      ['qwamos-lite', 'pixel-7', 1, 1],
    ]);
  });

  it('keeps concurrent updates', async () => {
    const dir = await freshDir('concurrent');
    const devices = Array.from({ length: 8 }, (_, i) => `device-${i}`);
    await Promise.all(devices.map((device, i) => recordSigning(dir, request(i, { device }))));

    expect((await readLedger(dir)).map((entry) => entry.device)).toEqual(devices);
    expect((await readdir(dir)).sort()).toEqual([LEDGER_FILE]);
  });

  it('rejects a negative index', async () => {
    const dir = await freshDir('negative');
    const error = await rejection(recordSigning(dir, request(-1)));
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toBe(`rollback index -1 must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}`);
  });

  it('rejects a missing key folder', async () => {
    const dir = path.join(scratch, 'missing');
    const error = await rejection(recordSigning(dir, request(1)));
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toBe(`key folder ${dir} does not exist; the rollback ledger is kept beside the keys, so pass the key store folder`);
  });

  it('rejects a corrupt ledger', async () => {
    const dir = await freshDir('corrupt');
    await recordSigning(dir, request(3));
    const file = path.join(dir, LEDGER_FILE);
    await writeFile(file, (await readFile(file, 'utf8')).slice(0, 40));

    const error = await rejection(recordSigning(dir, request(4)));
    expect(error.message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: invalid JSON \\(.+\\); restore the ledger from a backup \\(deleting it drops rollback protection for every product\\)$`));
  });

  it('rejects an entry with a bad index', async () => {
    const dir = await freshDir('bad-entry');
    const file = path.join(dir, LEDGER_FILE);
    await recordSigning(dir, request(3));
    await writeFile(file, (await readFile(file, 'utf8')).replace('"rollbackIndex": 3', '"rollbackIndex": "3"'));

    const error = await rejection(readLedger(dir));
    expect(error.message).toBe(`${file}: entries[0].rollbackIndex must be a non-negative integer; restore the ledger from a backup (deleting it drops rollback protection for every product)`);
  });
});
