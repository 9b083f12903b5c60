/**
 * Shared inputs of the flash tests: phone build output folders written with
 * the project's real image writers, a fastboot emulator laid out like a
 * small Pixel, and a runner for the flash command that captures its output
 * and exit status as `qwamos-build` would print them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { vi } from 'vitest';
import { createFlashCommand } from '../../cli/commands/flash.js';
import { isQwamosError } from '../../core/errors.js';
import type { VerifyBuild } from '../../deploy/flash-checks.js';
import { writeBootImage, writeInitBootImage } from '../../images/bootimg-write.js';
import { writeVendorBootImage } from '../../images/bootimg-vendor.js';
import { encodeAvbPublicKey, loadAvbKey } from '../../signing/avb-key.js';
import { makeVbmetaImage } from '../../signing/avb-vbmeta.js';
import { FastbootEmulator, type FastbootEmulatorOptions } from './fastboot-emulator.js';

export const AVB_TEST_KEY = path.resolve(process.cwd(), '../shared/test-vectors/avb/testkey_rsa4096.pem');

/** A build verification that passes, standing in for verifyBuildOutput. */
export const passingVerify: VerifyBuild = async () => ({ ok: true, failures: [] });

export interface PhoneBuildOptions {
  /** Kernel bytes in boot.img; above the emulator's max-download-size the image is sent in parts. */
  kernelSize?: number;
  /** Bytes of system.img (raw); default 1.5 MiB and 1000 bytes, so the last 4096-byte block is partial. */
  systemSize?: number;
  /** Pads vbmeta.img to a multiple of this many bytes (avbtool --padding_size). */
  vbmetaPadding?: number;
  /** Device id written into build.json; default the device itself. */
  recordDevice?: string;
}

export async function temporaryFolder(prefix: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `qwamos-${prefix}-`));
}

/**
 * Writes a build output folder for `device`: boot, init_boot, vendor_boot
 * and vbmeta images from the real writers, a raw system image with zero,
 * patterned and random blocks (so sparse images of it have RAW and FILL
 * chunks), the AVB public key blob, and build.json with their SHA-256.
 * fastboot 29.0.6 cannot resparse the system image itself because its
 * size is not a multiple of 4096, so flashing it tests our own split.
 */
export async function writePhoneBuild(dir: string, device: string, options: PhoneBuildOptions = {}): Promise<void> {
  const key = loadAvbKey(await readFile(AVB_TEST_KEY, 'utf8'), AVB_TEST_KEY);

  await writeBootImage({
    output: path.join(dir, 'boot.img'),
    headerVersion: 4,
    kernel: randomBytes(options.kernelSize ?? 700 * 1024),
    cmdline: 'console=ttynull',
  });
  await writeInitBootImage({ output: path.join(dir, 'init_boot.img'), ramdisk: randomBytes(90 * 1024) });
  await writeVendorBootImage({
    output: path.join(dir, 'vendor_boot.img'),
    headerVersion: 4,
    pageSize: 4096,
    vendorRamdisk: randomBytes(120 * 1024),
    dtb: randomBytes(8 * 1024),
  });
  await makeVbmetaImage({
    output: path.join(dir, 'vbmeta.img'),
    algorithm: 'SHA256_RSA4096',
    key,
    ...(options.vbmetaPadding ? { paddingSize: options.vbmetaPadding } : {}),
  });
  await writeFile(path.join(dir, 'avb_custom_key.bin'), encodeAvbPublicKey(key));

  await writeFile(path.join(dir, 'system.img'), systemImage(options.systemSize ?? 1536 * 1024 + 1000));

  await writeBuildRecord(dir, options.recordDevice ?? device);
}

/** Raw image bytes: random, zero and 0x5a-patterned 4096-byte blocks in a fixed cycle. */
function systemImage(size: number): Buffer {
  const image = Buffer.alloc(size);
  for (let offset = 0; offset < size; offset += 4096) {
    const kind = (offset / 4096) % 5;
    if (kind === 1 || kind === 2) randomBytes(Math.min(4096, size - offset)).copy(image, offset);
    if (kind === 4) image.fill(0x5a, offset, Math.min(offset + 4096, size));
  }
  return image;
}

/** Writes build.json listing every image in `dir` with its size and SHA-256. */
export async function writeBuildRecord(dir: string, device: string): Promise<void> {
  const names = ['boot.img', 'init_boot.img', 'vendor_boot.img', 'vbmeta.img', 'system.img', 'avb_custom_key.bin'];
  const outputs = [];
  for (const name of names) {
    const bytes = await readFile(path.join(dir, name)).catch(() => undefined);
    if (bytes) outputs.push({ name, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
  }
  const record = { formatVersion: 1, device, recipe: 'phone', sourceDateEpoch: 0, steps: [], outputs };
  await writeFile(path.join(dir, 'build.json'), `${JSON.stringify(record, null, 2)}\n`);
}

/**
 * Creates an emulator laid out like a small Pixel 8 (product shiba): A/B physical
 * partitions of a few hundred KiB, system_a and system_b in an 8 MiB super,
 * and a max-download-size of 512 KiB so boot.img and system.img go in parts.
 */
export function pixelEmulator(overrides: Partial<FastbootEmulatorOptions> = {}): FastbootEmulator {
  const partitions: Record<string, number> = { avb_custom_key: 4096, userdata: 64 * 1024, metadata: 64 * 1024 };
  for (const slot of ['a', 'b']) {
    partitions[`boot_${slot}`] = 1024 * 1024;
    partitions[`init_boot_${slot}`] = 256 * 1024;
    partitions[`vendor_boot_${slot}`] = 512 * 1024;
    partitions[`vbmeta_${slot}`] = 64 * 1024;
  }
  return new FastbootEmulator({
    product: 'shiba',
    maxDownloadSize: 512 * 1024,
    partitions,
    logicalPartitions: { system_a: 1024 * 1024, system_b: 0 },
    superSize: 8 * 1024 * 1024,
    initialFill: 0xee,
    ...overrides,
  });
}

export interface CommandOutput {
  status: number;
  stdout: string;
  stderr: string;
  /** The error message, as `qwamos-build` prints it after "error: ". */
  error?: string;
  errorCode?: string;
}

/**
 * Runs `qwamos-build flash ARGV` and captures what it prints. The build
 * verification is `verifyBuild`, or the real verifyBuildOutput for null.
 */
export async function runFlash(argv: string[], verifyBuild: VerifyBuild | null = passingVerify): Promise<CommandOutput> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const status = await createFlashCommand(verifyBuild === null ? {} : { verifyBuild }).run(argv);
    return { status, stdout, stderr };
  } catch (error) {
    if (!isQwamosError(error)) throw error;
    return { status: error.exitStatus, stdout, stderr, error: error.message, errorCode: error.code };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}
