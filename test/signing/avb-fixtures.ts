/**
 * Shared inputs of the AVB tests: the AOSP test keys and expected values
 * from the test-vector folder, temporary folders, and a runner for host
 * programs such as `openssl` and `veritysetup`.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadAvbKey, type AvbRsaKey } from '../../signing/avb-key.js';

export const AVB_VECTORS = path.resolve(process.cwd(), '../shared/test-vectors/avb');

/** Expected values recorded with AOSP avbtool for testkey_rsa2048.pem. */
export const KNOWN = {
  publicKeyBlobSize: 520,
  publicKeyBlobSha256: '22de3994532196f61c039e90260d78a93a4c57362c7e789be928036e80b77c8c',
  vbmetaSize: 1152,
  vbmetaSha256: '4161a7e655eabe16c3fe714de5d43736e7c0a190cf08d36c946d2509ce071e4d',
};

export function keyPath(bits: 2048 | 4096 | 8192): string {
  return path.join(AVB_VECTORS, `testkey_rsa${bits}.pem`);
}

const keyCache = new Map<number, AvbRsaKey>();

export async function testKey(bits: 2048 | 4096 | 8192): Promise<AvbRsaKey> {
  let key = keyCache.get(bits);
  if (!key) {
    key = loadAvbKey(await readFile(keyPath(bits), 'utf8'), keyPath(bits));
    keyCache.set(bits, key);
  }
  return key;
}

export async function temporaryFolder(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'qwamos-avb-'));
}

const execFileAsync = promisify(execFile);

/** Runs a host program and returns its exit status and output without throwing. */
export async function runProgram(program: string, args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(program, args, { maxBuffer: 16 * 1024 * 1024 });
    return { status: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { status: typeof failed.code === 'number' ? failed.code : 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

/** Returns a copy of `bytes` with one byte XORed with 0x01. */
export function flipByte(bytes: Uint8Array, offset: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[offset] = (copy[offset] as number) ^ 0x01;
  return copy;
}

/** Runs `action` and returns what it throws, or undefined when it returns. */
export function captureError(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  return undefined;
}

/** Awaits `action` and returns what it rejects with, or undefined when it resolves. */
export async function captureRejection(action: () => Promise<unknown>): Promise<unknown> {
  try {
    await action();
  } catch (error) {
    return error;
  }
  return undefined;
}
