/**
 * Flash plans and the checks that need no device: step order, slot
 * handling, erase rules, the dry-run table and JSON, and the rejection of
 * bad input. Sparse parts are checked with Debian's img2simg and simg2img.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { parseDeviceNumber, parseFastbootDevices, parseSlot, selectFastbootDevice } from '../../deploy/flash-checks.js';
import { downloadParts } from '../../deploy/flash-fastboot.js';
import { buildFlashPlan, resolvePlanSlots, type FlashPlan, type FlashStep } from '../../deploy/flash-plan.js';
import { readSparseImage } from '../../images/sparse-read.js';
import { loadProfile } from '../../pipeline/profiles.js';
import { encodeAvbPublicKey } from '../../signing/avb-key.js';
import { runFlash, temporaryFolder, writeBuildRecord, writePhoneBuild } from './flash-fixtures.js';

let pixelDir: string;
let scratch: string;

beforeAll(async () => {
  pixelDir = await temporaryFolder('plan-pixel');
  scratch = await temporaryFolder('plan-scratch');
  await writePhoneBuild(pixelDir, 'pixel-8');
});

afterAll(async () => {
  await rm(pixelDir, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

/** Describes steps as short strings: "flash boot_b", "set-active b", "reboot". */
function outline(plan: FlashPlan): string[] {
  return plan.steps.map((step: FlashStep) => {
    switch (step.kind) {
      case 'flash': return `flash ${step.target} ${step.mode}`;
      case 'erase': return `erase ${step.target}`;
      case 'set-active': return `set-active ${step.slot}`;
      default: return step.kind;
    }
  });
}

async function copyBuild(name: string): Promise<string> {
  const dir = path.join(scratch, name);
  await mkdir(dir, { recursive: true });
  for (const file of ['boot.img', 'init_boot.img', 'vendor_boot.img', 'vbmeta.img', 'system.img', 'avb_custom_key.bin', 'build.json']) {
    await writeFile(path.join(dir, file), await readFile(path.join(pixelDir, file)));
  }
  return dir;
}

describe('flash plan', () => {
  it('orders a Pixel 8 plan for the other slot', async () => {
    const plan = await buildFlashPlan(await loadProfile('pixel-8'), pixelDir);
    expect(outline(plan)).toEqual([
      'flash boot_<other> bootloader',
      'flash init_boot_<other> bootloader',
      'flash vendor_boot_<other> bootloader',
      'flash vbmeta_<other> bootloader',
      'flash avb_custom_key bootloader',
      'reboot-fastboot',
      'flash system_<other> fastbootd',
      'reboot-bootloader',
      'set-active other',
      'reboot',
    ]);
  });

  it('resolves the other slot from the current one', async () => {
    const plan = resolvePlanSlots(await buildFlashPlan(await loadProfile('pixel-8'), pixelDir), 'b');
    expect(plan.slot?.targets).toEqual(['a']);
    expect(outline(plan)).toContain('flash boot_a bootloader');
    expect(outline(plan)).toContain('flash system_a fastbootd');
    expect(outline(plan)).toContain('set-active a');
  });

  it('writes both slots with all and keeps the active one', async () => {
    const plan = await buildFlashPlan(await loadProfile('pixel-8'), pixelDir, { slot: 'all', reboot: false });
    const steps = outline(plan);
    expect(steps.filter((step) => step.startsWith('flash boot_'))).toEqual(['flash boot_a bootloader', 'flash boot_b bootloader']);
    expect(steps.filter((step) => step.startsWith('flash system_'))).toEqual(['flash system_a fastbootd', 'flash system_b fastbootd']);
    expect(steps.some((step) => step.startsWith('set-active'))).toBe(false);
    expect(steps).not.toContain('reboot');
  });

  it('skips avb_custom_key where re-locking is unsupported', async () => {
    const plan = await buildFlashPlan(await loadProfile('oneplus-12'), pixelDir, { slot: 'a' });
    expect(outline(plan)).not.toContain('flash avb_custom_key bootloader');
    expect(outline(plan)[0]).toBe('flash boot_a bootloader');
  });

  it('erases after flashing and before set_active', async () => {
    const plan = await buildFlashPlan(await loadProfile('pixel-8'), pixelDir, { slot: 'b', erase: ['boot_a'], wipe: true });
    expect(outline(plan).slice(-5)).toEqual(['erase boot_a', 'erase userdata', 'erase metadata', 'set-active b', 'reboot']);
  });

  it('rejects erasing a partition it does not manage', async () => {
    const profile = await loadProfile('pixel-8');
    await expect(buildFlashPlan(profile, pixelDir, { erase: ['modem_a'] })).rejects.toThrow(/--erase modem_a is not allowed/);
  });

  it('rejects a QEMU profile', async () => {
    await expect(buildFlashPlan(await loadProfile('qemu-virt-arm64'), pixelDir)).rejects.toThrow(/device qemu-virt-arm64 is flashed with 'qemu', not with fastboot or heimdall/);
  });

  it('rejects a folder without build.json', async () => {
    const result = await runFlash([scratch, '--device', 'pixel-8', '--dry-run']);
    expect(result.status).toBe(2);
    expect(result.errorCode).toBe('INPUT_NOT_FOUND');
    expect(result.error).toMatch(/build\.json does not exist, so .* is not a build output folder/);
  });

  it('rejects an invalid build.json', async () => {
    const dir = await copyBuild('invalid-record');
    await writeFile(path.join(dir, 'build.json'), '{"device":"pixel-8","outputs":{}}');
    const result = await runFlash([dir, '--device', 'pixel-8', '--dry-run']);
    expect(result.status).toBe(2);
    expect(result.error).toMatch(/build\.json is invalid: at \/outputs: expected a list/);
  });

  it('rejects a missing image', async () => {
    const dir = await copyBuild('missing-image');
    await rm(path.join(dir, 'init_boot.img'));
    const result = await runFlash([dir, '--device', 'pixel-8', '--dry-run']);
    expect(result.status).toBe(2);
    expect(result.error).toMatch(/init_boot\.img does not exist, but partition init_boot needs it/);
  });

  it('rejects a missing AVB key blob on a re-lockable device', async () => {
    const dir = await copyBuild('missing-key');
    await rm(path.join(dir, 'avb_custom_key.bin'));
    const result = await runFlash([dir, '--device', 'pixel-8', '--dry-run']);
    expect(result.status).toBe(2);
    expect(result.error).toMatch(/avb_custom_key\.bin does not exist, but partition avb_custom_key needs it/);
  });

  it('rejects an image larger than the profile allows', async () => {
    const dir = await temporaryFolder('plan-big-vbmeta');
    await writePhoneBuild(dir, 'pixel-8', { vbmetaPadding: 128 * 1024 });
    const result = await runFlash([dir, '--device', 'pixel-8', '--dry-run']);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/check 'profile-size' failed: vbmeta\.img is 131072 bytes, larger than partition vbmeta \(65536 bytes in device-profiles\/pixel-8\.yaml\)/);
    await rm(dir, { recursive: true, force: true });
  });

  it('rejects an AVB key blob of the wrong size', async () => {
    const dir = await copyBuild('key-2048');
    const smallKey = await readFile(path.resolve(process.cwd(), '../shared/test-vectors/avb/testkey_rsa2048.pem'), 'utf8');
    await writeFile(path.join(dir, 'avb_custom_key.bin'), encodeAvbPublicKey(smallKey));
    await writeBuildRecord(dir, 'pixel-8');
    const result = await runFlash([dir, '--device', 'pixel-8', '--dry-run', '--force']);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/^FAILED\s+avb-key\s+check 'avb-key' failed: avb_custom_key\.bin holds a 2048-bit key, but pixel-8 signs with SHA256_RSA4096 \(4096 bits\)/m);
  });

  it('rejects an AVB key that did not sign vbmeta', async () => {
    const dir = await copyBuild('key-other');
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 4096 });
    await writeFile(path.join(dir, 'avb_custom_key.bin'), encodeAvbPublicKey(privateKey));
    await writeBuildRecord(dir, 'pixel-8');
    const result = await runFlash([dir, '--device', 'pixel-8', '--dry-run']);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/check 'avb-key' failed: vbmeta\.img is not signed with the key in avb_custom_key\.bin; a bootloader re-locked with that key would not boot this build/);
  });

  it('rejects a damaged AVB key blob', async () => {
    const dir = await copyBuild('key-damaged');
    const blob = await readFile(path.join(dir, 'avb_custom_key.bin'));
    blob.writeUInt8(blob.readUInt8(600) ^ 0xff, 600);
    await writeFile(path.join(dir, 'avb_custom_key.bin'), blob);
    await writeBuildRecord(dir, 'pixel-8');
    const result = await runFlash([dir, '--device', 'pixel-8', '--dry-run']);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/check 'avb-key' failed: avb_custom_key\.bin is not a valid AVB public key blob \(.*inconsistent/);
  });

  it('accepts the AVB key that signed vbmeta', async () => {
    const result = await runFlash([pixelDir, '--device', 'pixel-8', '--dry-run']);
    expect(result.stdout).toMatch(/^ok\s+avb-key\s+vbmeta\.img is signed with the key in avb_custom_key\.bin$/m);
  });

  it('reports a file missing from build.json', async () => {
    const dir = await copyBuild('unrecorded');
    const record = JSON.parse(await readFile(path.join(dir, 'build.json'), 'utf8')) as { outputs: { name: string }[] };
    record.outputs = record.outputs.filter((output) => output.name !== 'boot.img');
    await writeFile(path.join(dir, 'build.json'), JSON.stringify(record));
    const result = await runFlash([dir, '--device', 'pixel-8', '--dry-run', '--force']);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/check 'checksum' failed: boot\.img has no entry in .*build\.json, so its SHA-256 cannot be checked/);
  });
});

describe('flash dry run', () => {
  it('prints the plan as a table', async () => {
    const result = await runFlash([pixelDir, '--dry-run']);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`flash plan: ${pixelDir} to pixel-8 with fastboot`);
    expect(result.stdout).toMatch(/^step\s+action\s+mode\s+partition\s+file\s+bytes\s+sha256$/m);
    const bootSize = (await readFile(path.join(pixelDir, 'boot.img'))).length;
    expect(result.stdout).toMatch(new RegExp(`^1\\s+flash\\s+bootloader\\s+boot_<other>\\s+boot\\.img\\s+${bootSize}\\s+[0-9a-f]{16}$`, 'm'));
    expect(result.stdout).toMatch(/^9\s+set-active\s+other$/m);
    expect(result.stdout).toMatch(/^ok\s+verify\s+/m);
    expect(result.stdout).toContain('dry run: nothing was written; all checks that ran pass');
    expect(result.stdout).toContain('not checked without a device: mode, product, unlocked, slots, partition-size');
  });

  it('prints the plan as JSON', async () => {
    const result = await runFlash([pixelDir, '--device', 'pixel-8', '--dry-run', '--json', '--slot', 'b', '--no-reboot']);
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout) as { ok: boolean; dryRun: boolean; flashed: boolean; plan: { steps: Record<string, unknown>[]; slot: { choice: string } }; checks: { name: string; ok: boolean }[] };
    expect(report.ok).toBe(true);
    expect(report.dryRun).toBe(true);
    expect(report.flashed).toBe(false);
    expect(report.plan.slot.choice).toBe('b');
    const boot = await readFile(path.join(pixelDir, 'boot.img'));
    expect(report.plan.steps[0]).toMatchObject({ kind: 'flash', mode: 'bootloader', partition: 'boot_b', file: 'boot.img', size: boot.length, sparse: false });
    expect(report.plan.steps.map((step) => step.kind)).toEqual(['flash', 'flash', 'flash', 'flash', 'flash', 'reboot-fastboot', 'flash', 'reboot-bootloader', 'set-active']);
    expect(report.checks.every((check) => check.ok)).toBe(true);
  });

  it('exits 1 when verification fails, and marks it forced with --force', async () => {
    const failing = async () => ({ ok: false, failures: ['boot.img: digest mismatch'] });
    const refused = await runFlash([pixelDir, '--dry-run'], failing);
    expect(refused.status).toBe(1);
    expect(refused.stdout).toMatch(/^FAILED\s+verify\s+check 'verify' failed: .* does not pass verification: boot\.img: digest mismatch/m);

    const forced = await runFlash([pixelDir, '--dry-run', '--force'], failing);
    expect(forced.status).toBe(0);
    expect(forced.stdout).toMatch(/^forced\s+verify\s+/m);
  });

  it('runs the real build verification by default', async () => {
    // The test build has no signed chain section, so verifyBuildOutput rejects it.
    const result = await runFlash([pixelDir, '--dry-run'], null);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/^FAILED\s+verify\s+check 'verify' failed: .* does not pass verification: /m);
  });

  it('reports a verifier error as a failed verify check', async () => {
    const throwing = async (): Promise<never> => {
      const { QwamosError } = await import('../../core/errors.js');
      throw new QwamosError('INPUT_INVALID', 'build.json lacks the chain section');
    };
    const result = await runFlash([pixelDir, '--dry-run'], throwing);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/check 'verify' failed: .* does not pass verification: build\.json lacks the chain section/);
  });
});

describe('flash usage', () => {
  const cases: [string, string[], RegExp][] = [
    ['no folder', ['--dry-run'], /expected exactly one build output folder/],
    ['invalid slot', ['--slot', 'c'], /--slot 'c' is invalid; use a, b, all or other/],
    ['transport and serial', ['--transport', 'tcp:127.0.0.1:5554', '--serial', 'X'], /give either --transport .* or --serial .*, not both/],
    ['invalid transport', ['--transport', '127.0.0.1:5554'], /--transport '127\.0\.0\.1:5554' is invalid; write tcp:HOST or tcp:HOST:PORT/],
    ['invalid timeout', ['--timeout', '0'], /--timeout must be a positive number of seconds, got '0'/],
    ['unknown option', ['--frobnicate'], /Unknown option '--frobnicate'/],
  ];
  for (const [name, extra, message] of cases) {
    it(`rejects ${name}`, async () => {
      const argv = name === 'no folder' ? extra : [pixelDir, ...extra];
      const result = await runFlash(argv);
      expect(result.status).toBe(2);
      expect(result.error).toMatch(message);
    });
  }

  it('rejects --slot on a device without slots', async () => {
    const result = await runFlash([pixelDir, '--device', 'galaxy-s24-exynos', '--slot', 'a', '--dry-run']);
    expect(result.status).toBe(2);
    expect(result.error).toMatch(/--slot was given, but galaxy-s24-exynos has no A\/B slots/);
  });

  it('rejects an unknown device', async () => {
    const result = await runFlash([pixelDir, '--device', 'pixel-99', '--dry-run']);
    expect(result.status).toBe(2);
    expect(result.error).toMatch(/unknown device 'pixel-99'/);
  });
});

describe('fastboot helpers', () => {
  it('splits a sparse image above max-download-size into valid parts', async () => {
    const raw = Buffer.alloc(200 * 4096);
    for (let block = 0; block < 200; block += 2) randomBytes(4096).copy(raw, block * 4096);
    const rawFile = path.join(scratch, 'helper.raw');
    const sparseFile = path.join(scratch, 'helper.simg');
    await writeFile(rawFile, raw);
    await runTool('img2simg', [rawFile, sparseFile]);
    const info = await readSparseImage(sparseFile);

    const workDir = path.join(scratch, 'parts');
    await mkdir(workDir, { recursive: true });
    const image = { partition: 'system', file: 'helper.simg', path: sparseFile, fileSize: info.fileSize, imageSize: info.rawSize, sparse: true, sha256: '', logical: true, slotted: true };
    const parts = await downloadParts(image, 128 * 1024, workDir);
    expect(parts.length).toBeGreaterThan(1);

    const expanded = path.join(scratch, 'helper.expanded');
    await runTool('simg2img', [...parts, expanded]);
    expect((await readFile(expanded)).equals(raw)).toBe(true);
    for (const part of parts) expect((await readFile(part)).length).toBeLessThanOrEqual(128 * 1024);
  });

  it('sends an image that fits as it is', async () => {
    const image = { partition: 'boot', file: 'boot.img', path: path.join(pixelDir, 'boot.img'), fileSize: 1000, imageSize: 1000, sparse: false, sha256: '', logical: false, slotted: true };
    expect(await downloadParts(image, 4096, scratch)).toEqual([image.path]);
    expect(await downloadParts(image, undefined, scratch)).toEqual([image.path]);
  });

  it('parses fastboot numbers and slots', () => {
    expect(parseDeviceNumber('0x10000000')).toBe(0x1000_0000);
    expect(parseDeviceNumber(' 536870912 ')).toBe(536_870_912);
    expect(parseDeviceNumber('0x0000000004000000')).toBe(0x400_0000);
    expect(parseDeviceNumber('big')).toBeUndefined();
    expect(parseDeviceNumber(undefined)).toBeUndefined();
    expect(parseSlot('_b')).toBe('b');
    expect(parseSlot('a')).toBe('a');
    expect(parseSlot('c')).toBeUndefined();
  });

  it('picks a USB device from fastboot devices output', () => {
    const listed = parseFastbootDevices('ABC123\tfastboot\nDEF456\tfastboot\n\nno permissions\n');
    expect(listed).toEqual(['ABC123', 'DEF456']);
    expect(selectFastbootDevice(['ABC123'], undefined).serial).toBe('ABC123');
    expect(selectFastbootDevice(listed, 'DEF456').serial).toBe('DEF456');
    expect(selectFastbootDevice(listed, undefined).message).toBe("check 'mode' failed: 2 devices are in fastboot mode (ABC123, DEF456); pick one with --serial");
    expect(selectFastbootDevice([], undefined).message).toMatch(/no device is in fastboot mode \('fastboot devices' lists none\)/);
  });
});
