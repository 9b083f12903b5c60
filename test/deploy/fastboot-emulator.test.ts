/**
 * The fastboot emulator against the real `fastboot` client (Debian 29.0.6)
 * and Debian's `img2simg`: it must store exactly what a device stores, or
 * the flash tests built on it would prove nothing.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { writeSparseImage } from '../../images/sparse-write.js';
import { FastbootEmulator } from './fastboot-emulator.js';
import { temporaryFolder } from './flash-fixtures.js';

let dir: string;
let emulator: FastbootEmulator;

/** Returns a raw image of random, zero and patterned 4096-byte blocks, then `tail` random bytes. */
function mixedImage(blocks: number, tail = 0): Buffer {
  const image = Buffer.alloc(blocks * 4096 + tail);
  for (let block = 0; block < blocks; block += 1) {
    if (block % 3 === 0) randomBytes(4096).copy(image, block * 4096);
    if (block % 3 === 1) image.fill(0x7c, block * 4096, (block + 1) * 4096);
  }
  randomBytes(tail).copy(image, blocks * 4096);
  return image;
}

async function fastboot(...args: string[]): Promise<string> {
  const lines: string[] = [];
  await runTool('fastboot', ['-s', emulator.serial, ...args], { onLine: (line) => lines.push(line), timeoutMs: 15_000 });
  return lines.join('\n');
}

beforeAll(async () => {
  dir = await temporaryFolder('fastboot-emulator');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  emulator = new FastbootEmulator({
    product: 'emulated',
    maxDownloadSize: 256 * 1024,
    partitions: { boot_a: 2 * 1024 * 1024, boot_b: 2 * 1024 * 1024 },
    logicalPartitions: { system_b: 0 },
    superSize: 4 * 1024 * 1024,
    initialFill: 0x11,
  });
  await emulator.start();
});

afterEach(async () => {
  await emulator.stop();
});

describe('fastboot emulator', () => {
  it('answers getvar over TCP', async () => {
    const output = await fastboot('getvar', 'product');
    expect(output).toContain('product: emulated');
    expect(emulator.commands).toEqual(['getvar:product']);
  });

  it('reassembles an image fastboot resparses itself', async () => {
    const raw = mixedImage(300);
    const file = path.join(dir, 'raw.img');
    await writeFile(file, raw);
    const output = await fastboot('flash', 'boot_a', file);

    expect(output).toMatch(/Sending sparse 'boot_a' 1\/\d+/);
    expect(emulator.flashes.length).toBeGreaterThan(1);
    expect(emulator.flashes.every((record) => record.sparse)).toBe(true);
    expect(emulator.read('boot_a', raw.length).equals(raw)).toBe(true);
    expect(emulator.crc32Chunks).toBe(0);
  });

  it('rejects the broken resparse of an unaligned image', async () => {
    // fastboot 29.0.6 resparses an image whose size is not a multiple of
    // 4096 into a truncated sparse image. A device rejects it, and so does
    // the emulator, so qwamos-build splits large images itself.
    const file = path.join(dir, 'unaligned.img');
    await writeFile(file, mixedImage(300, 1000));
    const failure = await fastboot('flash', 'boot_a', file).catch((error: Error & { details?: string[] }) => error.details?.join('\n') ?? '');

    expect(failure).toContain("don't care size");
    expect(failure).toMatch(/FAILED \(remote: 'sparse chunk \d+ header is truncated'\)/);
    expect(emulator.flashes).toEqual([]);
    expect(emulator.read('boot_a').every((byte) => byte === 0x11)).toBe(true);
  });

  it('decodes img2simg output like simg2img', async () => {
    const raw = mixedImage(40, 1000);
    const rawFile = path.join(dir, 'small.img');
    const sparseFile = path.join(dir, 'small.simg');
    await writeFile(rawFile, raw);
    await runTool('img2simg', [rawFile, sparseFile]);
    await fastboot('flash', 'boot_b', sparseFile);

    const expandedFile = path.join(dir, 'small.expanded');
    await runTool('simg2img', [sparseFile, expandedFile]);
    const expanded = await readFile(expandedFile);
    expect(emulator.flashes[0]?.sparse).toBe(true);
    expect(emulator.read('boot_b', expanded.length).equals(expanded)).toBe(true);
  });

  it('leaves DONT_CARE blocks as they were', async () => {
    const raw = mixedImage(120, 1000);
    const rawFile = path.join(dir, 'split.img');
    await writeFile(rawFile, raw);
    const parts = await writeSparseImage(rawFile, path.join(dir, 'split.simg'), { maxFileSize: 64 * 1024 });
    expect(parts.length).toBeGreaterThan(1);

    // Only the last part: every block it does not hold is DONT_CARE and must keep the 0x11 fill.
    await fastboot('flash', 'boot_a', parts[parts.length - 1]!);
    const stored = emulator.read('boot_a', raw.length);
    const changed = stored.findIndex((byte, offset) => byte !== 0x11 && byte === raw[offset]);
    expect(changed).toBeGreaterThan(0);
    expect(stored.subarray(0, changed).every((byte) => byte === 0x11)).toBe(true);
    expect(stored.subarray(changed).equals(raw.subarray(changed))).toBe(true);

    for (const part of parts.slice(0, -1)) await fastboot('flash', 'boot_a', part);
    expect(emulator.read('boot_a', raw.length).equals(raw)).toBe(true);
  });

  it('rejects unknown commands with FAIL and records them', async () => {
    const failure = await fastboot('oem', 'frobnicate').catch((error: Error & { details?: string[] }) => error.details?.join('\n') ?? '');
    expect(failure).toContain("FAILED (remote: 'unknown command')");
    expect(emulator.unknown).toEqual(['oem frobnicate']);

    const variable = await fastboot('getvar', 'no-such-variable');
    expect(variable).toContain("FAILED (remote: 'unknown variable')");
    expect(emulator.unknown).toContain('getvar:no-such-variable');
  });

  it('hides logical partitions from the bootloader', async () => {
    const file = path.join(dir, 'tiny.img');
    await writeFile(file, randomBytes(5000));
    const failure = await fastboot('flash', 'system_b', file).catch((error: Error & { details?: string[] }) => error.details?.join('\n') ?? '');
    expect(failure).toContain("FAILED (remote: 'partition system_b does not exist')");
    expect(emulator.flashes).toEqual([]);
  });
});
