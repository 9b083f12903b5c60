/**
 * Phone builds for every phone profile, from a stand-in kernel (the boot
 * image tools do not look inside it): checked with Debian's unpack_bootimg,
 * simg2img and veritysetup, and our AVB verifier following the chains.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CLI = path.resolve('bin/qwamos-build.js');
const PHONES = ['pixel-8', 'pixel-8-pro', 'oneplus-12', 'galaxy-s24-exynos', 'galaxy-s24-snapdragon'];

async function cli(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { maxBuffer: 64 * 1024 * 1024 });
    return { status: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { status: failed.code ?? 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

let workDir: string;
let kernel: string;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(os.tmpdir(), 'qwamos-phone-'));
  kernel = path.join(workDir, 'Image');
  // Random bytes behind the arm64 Image header magic "ARM\x64" at byte 56.
  const image = randomBytes(2 * 1024 * 1024);
  image.write('ARM\x64', 56, 'latin1');
  await writeFile(kernel, image);
});

describe.each(PHONES)('phone build for %s', (device) => {
  let outDir: string;

  beforeAll(async () => {
    outDir = path.join(workDir, device);
    const result = await cli(['build', '--device', device, '--kernel', kernel, '--out', outDir, '--quiet']);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  }, 300_000);

  it('packs boot images that unpack_bootimg reads', async () => {
    const boot = await run('unpack_bootimg', ['--boot_img', path.join(outDir, 'boot.img'), '--out', path.join(workDir, `${device}-boot`)]);
    expect(boot.stdout).toContain('boot_magic: ANDROID!');
    expect(await readFile(path.join(workDir, `${device}-boot`, 'kernel'))).toEqual(await readFile(kernel));

    const vendor = await run('unpack_bootimg', ['--boot_img', path.join(outDir, 'vendor_boot.img'), '--out', path.join(workDir, `${device}-vendor`)]);
    expect(vendor.stdout).toContain('boot_magic: VNDRBOOT');
  });

  it('verifies vbmeta and every chained partition', async () => {
    const result = await cli(['avb', 'verify_image', '--image', path.join(outDir, 'vbmeta.img'), '--key', path.join(outDir, 'avb_custom_key.bin'), '--follow_chain_partitions']);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('writes a sparse system image that simg2img expands to the raw one', async () => {
    const raw = path.join(workDir, `${device}-system.raw`);
    await run('simg2img', [path.join(outDir, 'sparse', 'system.img'), raw]);
    expect((await readFile(raw)).equals(await readFile(path.join(outDir, 'system.img')))).toBe(true);
  });

  it('fills each partition exactly with footers at the end', async () => {
    const build = JSON.parse(await readFile(path.join(outDir, 'build.json'), 'utf8')) as { outputs: { name: string; size: number }[] };
    const sizeOf = (name: string): number | undefined => build.outputs.find((output) => output.name === name)?.size;
    const profile = (await import('../../pipeline/profiles.js')).loadProfile(device);
    const partitions = (await profile).android!.partitions;

    for (const name of ['boot', 'init_boot', 'vendor_boot', 'system']) {
      expect(sizeOf(`${name}.img`)).toBe(partitions[name]!.size);
    }
  });
});

describe('phone build limits', () => {
  it('rejects a kernel too large for the boot partition', async () => {
    const huge = path.join(workDir, 'huge-Image');
    const image = Buffer.alloc(70 * 1024 * 1024, 1);
    image.write('ARM\x64', 56, 'latin1');
    await writeFile(huge, image);
    const result = await cli(['build', '--device', 'pixel-8', '--kernel', huge, '--out', path.join(workDir, 'too-big'), '--quiet']);

    expect(result.status).toBe(2);
    expect(result.stderr).toContain('boot: image is');
    expect(result.stderr).toContain('partition boot is 67108864 bytes');
  }, 120_000);

  it('rejects a kernel file without the arm64 Image header', async () => {
    const result = await cli(['build', '--device', 'pixel-8', '--kernel', path.resolve('README.md'), '--out', path.join(workDir, 'not-a-kernel')]);

    expect(result.status).toBe(2);
    expect(result.stderr).toContain('is not an arm64 kernel Image');
  });

  it('asks for --kernel when the device kernel source is not pinned', async () => {
    const result = await cli(['build', '--device', 'pixel-8', '--out', path.join(workDir, 'no-kernel')]);

    expect(result.status).toBe(2);
    expect(result.stderr).toContain('give a kernel Image with --kernel IMAGE');
  });
});
