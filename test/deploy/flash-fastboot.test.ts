/**
 * `qwamos-build flash` driving the real `fastboot` client (Debian fastboot
 * 29.0.6) against the fastboot emulator over TCP on 127.0.0.1. No phone is
 * involved: the emulator stores what a device would store, so each test
 * compares the partition bytes with the built images.
 */
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FastbootEmulator } from './fastboot-emulator.js';
import { pixelEmulator, runFlash, temporaryFolder, writePhoneBuild, type CommandOutput } from './flash-fixtures.js';

const IMAGES = ['boot', 'init_boot', 'vendor_boot', 'vbmeta'] as const;

let buildDir: string;
let emulators: FastbootEmulator[] = [];

beforeAll(async () => {
  buildDir = await temporaryFolder('flash-build');
  await writePhoneBuild(buildDir, 'pixel-8');
});

afterAll(async () => {
  await rm(buildDir, { recursive: true, force: true });
});

afterEach(async () => {
  for (const emulator of emulators) await emulator.stop();
  emulators = [];
});

async function startEmulator(overrides: Parameters<typeof pixelEmulator>[0] = {}): Promise<FastbootEmulator> {
  const emulator = pixelEmulator(overrides);
  emulators.push(emulator);
  await emulator.start();
  return emulator;
}

async function image(name: string, dir = buildDir): Promise<Buffer> {
  return readFile(path.join(dir, name));
}

/** Checks that a logical partition holds `built` padded with zeros to whole 4096-byte blocks, as the sparse parts write it. */
function holdsPadded(stored: Buffer, built: Buffer): boolean {
  const padded = Math.ceil(built.length / 4096) * 4096;
  return stored.length === padded && stored.subarray(0, built.length).equals(built) && stored.subarray(built.length).every((byte) => byte === 0);
}

/** Commands that change a device: everything but getvar and the read-only variables. */
function writes(emulator: FastbootEmulator): string[] {
  return emulator.commands.filter((command) => !command.startsWith('getvar:'));
}

function flash(emulator: FastbootEmulator, ...extra: string[]): Promise<CommandOutput> {
  return runFlash([buildDir, '--device', 'pixel-8', '--transport', emulator.serial, '--log', path.join(buildDir, 'logs', `test-${emulator.port}.log`), ...extra]);
}

describe('flash with fastboot', () => {
  // One default flash (slot other, no erase, reboot), checked from several sides.
  let flashed: FastbootEmulator;
  let flashedResult: CommandOutput;
  let flashedLog: string;

  beforeAll(async () => {
    flashed = pixelEmulator();
    await flashed.start();
    flashedLog = path.join(buildDir, 'logs', 'default-flash.log');
    flashedResult = await runFlash([buildDir, '--device', 'pixel-8', '--transport', flashed.serial, '--log', flashedLog, '--json']);
  });

  afterAll(async () => {
    await flashed.stop();
  });

  it('writes the inactive slot and switches to it', async () => {
    expect(flashedResult.error).toBeUndefined();
    expect(flashedResult.status).toBe(0);

    for (const name of IMAGES) {
      const built = await image(`${name}.img`);
      expect(flashed.read(`${name}_b`, built.length).equals(built), `${name}_b holds ${name}.img`).toBe(true);
      expect(flashed.read(`${name}_a`).every((byte) => byte === 0xee), `${name}_a is untouched`).toBe(true);
    }
    const system = await image('system.img');
    expect(system.length % 4096).not.toBe(0);
    expect(holdsPadded(flashed.read('system_b'), system)).toBe(true);
    const key = await image('avb_custom_key.bin');
    expect(flashed.read('avb_custom_key', key.length).equals(key)).toBe(true);

    expect(flashed.activeSlot).toBe('b');
    expect(flashed.mode).toBe('bootloader');
    expect(flashed.commands[flashed.commands.length - 1]).toBe('reboot');
  });

  it('answers every command fastboot 29.0.6 sends', () => {
    expect(flashed.unknown).toEqual([]);
  });

  it('sends images above max-download-size as sparse parts', () => {
    const boot = flashed.flashes.filter((record) => record.partition === 'boot_b');
    expect(boot.length).toBe(2);
    expect(boot.every((record) => record.sparse)).toBe(true);
    expect(Math.max(...flashed.downloads)).toBeLessThanOrEqual(512 * 1024);
    const system = flashed.flashes.filter((record) => record.partition === 'system_b');
    expect(system.length).toBeGreaterThan(1);
    expect(system.every((record) => record.mode === 'fastbootd')).toBe(true);
    expect(flashed.crc32Chunks).toBe(0);
  });

  it('writes logical partitions from fastbootd', async () => {
    const order = writes(flashed).map((command) => command.replace(/^download:.*/, 'download'));
    const rebootFastboot = order.indexOf('reboot-fastboot');
    const firstSystem = order.findIndex((command) => command.startsWith('flash:system_b'));
    const rebootBootloader = order.indexOf('reboot-bootloader');
    const setActive = order.indexOf('set_active:b');
    expect(rebootFastboot).toBeGreaterThan(order.indexOf('flash:avb_custom_key'));
    expect(firstSystem).toBeGreaterThan(rebootFastboot);
    const padded = Math.ceil((await image('system.img')).length / 4096) * 4096;
    expect(order).toContain(`resize-logical-partition:system_b:${padded}`);
    expect(rebootBootloader).toBeGreaterThan(firstSystem);
    expect(setActive).toBeGreaterThan(rebootBootloader);
  });

  it('reports read-back values as JSON', async () => {
    const report = JSON.parse(flashedResult.stdout) as { ok: boolean; flashed: boolean; readback: { variable: string; value: string; expected?: string; ok: boolean }[] };

    expect(report.ok).toBe(true);
    expect(report.flashed).toBe(true);
    const slot = report.readback.find((entry) => entry.variable === 'current-slot');
    expect(slot).toEqual({ variable: 'current-slot', value: 'b', expected: 'b', ok: true });
    const system = report.readback.find((entry) => entry.variable === 'partition-size:system_b');
    expect(Number(system?.value)).toBe(Math.ceil((await image('system.img')).length / 4096) * 4096);
    expect(system?.ok).toBe(true);
    expect(report.readback.find((entry) => entry.variable === 'partition-size:boot_b')?.ok).toBe(true);
  });

  it('logs every fastboot invocation and its output', async () => {
    const log = await readFile(flashedLog, 'utf8');
    const serial = flashed.serial;
    expect(log).toMatch(/^# qwamos-build flash .* started \d{4}-/);
    expect(log).toContain(`$ fastboot -s ${serial} getvar product`);
    expect(log).toContain('product: shiba');
    expect(log).toContain(`$ fastboot -s ${serial} flash vbmeta_b ${path.join(buildDir, 'vbmeta.img')}`);
    expect(log).toContain("Writing 'vbmeta_b'");
    expect(log).toContain(`$ fastboot -s ${serial} set_active b`);
    expect(log).toContain(`$ fastboot -s ${serial} reboot`);
    expect(log).not.toContain('PRIVATE KEY');
  });

  it('erases nothing unless asked', () => {
    expect(writes(flashed).filter((command) => command.startsWith('erase:'))).toEqual([]);
    expect(flashed.read('userdata').every((byte) => byte === 0xee)).toBe(true);
  });

  it('flashes the named slot with --slot a', async () => {
    const emulator = await startEmulator({ currentSlot: 'b' });
    const result = await flash(emulator, '--slot', 'a');
    expect(result.status).toBe(0);

    const boot = await image('boot.img');
    expect(emulator.read('boot_a', boot.length).equals(boot)).toBe(true);
    expect(emulator.read('boot_b').every((byte) => byte === 0xee)).toBe(true);
    expect(emulator.activeSlot).toBe('a');
  });

  it('flashes both slots with --slot all', async () => {
    const emulator = await startEmulator();
    const result = await flash(emulator, '--slot', 'all', '--no-reboot');
    expect(result.status).toBe(0);

    for (const name of IMAGES) {
      const built = await image(`${name}.img`);
      expect(emulator.read(`${name}_a`, built.length).equals(built), `${name}_a`).toBe(true);
      expect(emulator.read(`${name}_b`, built.length).equals(built), `${name}_b`).toBe(true);
    }
    const system = await image('system.img');
    expect(holdsPadded(emulator.read('system_a'), system)).toBe(true);
    expect(holdsPadded(emulator.read('system_b'), system)).toBe(true);
    expect(writes(emulator).some((command) => command.startsWith('set_active'))).toBe(false);
    expect(emulator.activeSlot).toBe('a');
    expect(emulator.commands).not.toContain('reboot');
  });

  it('flashes the AVB key to a bootloader that reports no size for it', async () => {
    const { avb_custom_key: _unreported, ...partitions } = pixelEmulator().options.partitions;
    const emulator = await startEmulator({ partitions });
    const result = await flash(emulator, '--slot', 'b', '--no-reboot');
    expect(result.status).toBe(0);
    expect(emulator.avbCustomKey?.equals(await image('avb_custom_key.bin'))).toBe(true);
  });

  it('warns when --slot names the running slot', async () => {
    const emulator = await startEmulator();
    const result = await flash(emulator, '--slot', 'a', '--dry-run');
    expect(result.stdout).toMatch(/warning: slot a is the slot the device runs now/);
  });

  it('erases userdata and metadata with --wipe', async () => {
    const emulator = await startEmulator();
    const result = await flash(emulator, '--wipe');
    expect(result.status).toBe(0);

    expect(emulator.read('userdata').every((byte) => byte === 0xff)).toBe(true);
    expect(emulator.read('metadata').every((byte) => byte === 0xff)).toBe(true);
    const erases = writes(emulator).filter((command) => command.startsWith('erase:'));
    expect(erases).toEqual(['erase:userdata', 'erase:metadata']);
  });

  it('rejects --erase of a partition it does not manage', async () => {
    const emulator = await startEmulator();
    const result = await flash(emulator, '--erase', 'persist');
    expect(result.status).toBe(2);
    expect(result.error).toMatch(/--erase persist is not allowed; qwamos-build erases only .*userdata/);
    expect(emulator.commands).toEqual([]);
  });

  it('picks one of two devices by address', async () => {
    const first = await startEmulator();
    const second = await startEmulator();
    const result = await flash(second);
    expect(result.status).toBe(0);
    expect(first.commands).toEqual([]);
    expect(second.activeSlot).toBe('b');
  });

  it('dry run queries the device but writes nothing', async () => {
    const emulator = await startEmulator();
    const result = await flash(emulator, '--dry-run', '--json');
    expect(result.status).toBe(0);

    const report = JSON.parse(result.stdout) as { ok: boolean; flashed: boolean; plan: { slot: { current: string; targets: string[] }; steps: { kind: string; partition?: string }[] } };
    expect(report.flashed).toBe(false);
    expect(report.plan.slot.current).toBe('a');
    expect(report.plan.slot.targets).toEqual(['b']);
    expect(report.plan.steps[0]).toMatchObject({ kind: 'flash', partition: 'boot_b' });
    expect(writes(emulator)).toEqual([]);
  });
});

describe('flash refusals', () => {
  it('rejects a wrong product', async () => {
    const emulator = await startEmulator({ product: 'husky' });
    const result = await flash(emulator, '--force');
    expect(result.status).toBe(1);
    expect(result.errorCode).toBe('FLASH_CHECK_FAILED');
    expect(result.error).toMatch(/^refusing to flash: check 'product' failed: the device reports product 'husky', but pixel-8 expects shiba/);
    expect(writes(emulator)).toEqual([]);
  });

  it('rejects a locked bootloader', async () => {
    const emulator = await startEmulator({ unlocked: false });
    const result = await flash(emulator);
    expect(result.status).toBe(1);
    expect(result.error).toMatch(/^refusing to flash: check 'unlocked' failed: the bootloader reports unlocked: no; unlock it first/);
    expect(result.error).toMatch(/--force skips these checks$/);
    expect(writes(emulator)).toEqual([]);
  });

  it('leaves a locked device to reject a forced flash', async () => {
    const emulator = await startEmulator({ unlocked: false });
    const result = await flash(emulator, '--force');
    expect(result.status).toBe(1);
    expect(result.errorCode).toBe('FLASH_FAILED');
    expect(result.error).toMatch(/^the device rejected flashing boot_b with boot\.img \(part 1 of 2\): remote: 'Flashing is not allowed in Lock State'\. Slot a, which the device boots now, was not changed\./);
    expect(emulator.read('boot_b').every((byte) => byte === 0xee)).toBe(true);
  });

  it('rejects an image larger than its partition, even with --force', async () => {
    const emulator = await startEmulator({ partitions: { ...pixelEmulator().options.partitions, vendor_boot_b: 64 * 1024 } });
    const result = await flash(emulator, '--force');
    expect(result.status).toBe(1);
    const size = (await image('vendor_boot.img')).length;
    expect(result.error).toContain(`check 'partition-size' failed: vendor_boot.img is ${size} bytes, but partition vendor_boot_b on the device is 65536 bytes`);
    expect(writes(emulator)).toEqual([]);
  });

  it('rejects logical images that do not fit super', async () => {
    const emulator = await startEmulator({ superSize: 1024 * 1024 });
    const result = await flash(emulator);
    expect(result.status).toBe(1);
    expect(result.error).toMatch(/check 'partition-size' failed: system\.img is 1573864 bytes, but partition super \(logical partitions\) on the device is 1048576 bytes/);
    expect(writes(emulator)).toEqual([]);
  });

  it('rejects a file that changed after the build, even with --force', async () => {
    const dir = await temporaryFolder('flash-changed');
    await writePhoneBuild(dir, 'pixel-8');
    const vendorBoot = path.join(dir, 'vendor_boot.img');
    const bytes = await readFile(vendorBoot);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0x01, bytes.length - 1);
    await writeFile(vendorBoot, bytes);

    const emulator = await startEmulator();
    const result = await runFlash([dir, '--device', 'pixel-8', '--transport', emulator.serial, '--force']);
    expect(result.status).toBe(1);
    expect(result.error).toMatch(/check 'checksum' failed: vendor_boot\.img has SHA-256 [0-9a-f]{64}, but .*build\.json records [0-9a-f]{64}; the file changed after the build/);
    expect(writes(emulator)).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  });

  it('rejects a build that fails verification unless forced', async () => {
    const failing = async () => ({ ok: false, failures: ['vbmeta.img: signature does not match'] });
    const emulator = await startEmulator();
    const refused = await runFlash([buildDir, '--device', 'pixel-8', '--transport', emulator.serial], failing);
    expect(refused.status).toBe(1);
    expect(refused.error).toMatch(/check 'verify' failed: .* does not pass verification: vbmeta\.img: signature does not match/);
    expect(writes(emulator)).toEqual([]);

    const forced = await runFlash([buildDir, '--device', 'pixel-8', '--transport', emulator.serial, '--force'], failing);
    expect(forced.status).toBe(0);
    expect(forced.stdout).toMatch(/warning: forced past check 'verify' failed/);
    expect(emulator.activeSlot).toBe('b');
  });

  it('rejects a device in fastbootd', async () => {
    const emulator = await startEmulator();
    emulator.mode = 'fastbootd';
    const result = await flash(emulator);
    expect(result.status).toBe(1);
    expect(result.error).toMatch(/check 'mode' failed: the device at tcp:127\.0\.0\.1:\d+ is in fastbootd \(userspace fastboot\)/);
    expect(writes(emulator)).toEqual([]);
  });

  it('rejects an address where no device answers', async () => {
    const emulator = await startEmulator();
    const serial = emulator.serial;
    await emulator.stop();
    const started = Date.now();
    const result = await runFlash([buildDir, '--device', 'pixel-8', '--transport', serial, '--timeout', '2']);
    expect(result.status).toBe(1);
    expect(result.error).toMatch(new RegExp(`check 'mode' failed: no fastboot device responded at ${serial.replace(/\./g, '\\.')}`));
    expect(result.error).toContain('no response from the device within 2 s');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('rejects a build made for another device', async () => {
    const dir = await temporaryFolder('flash-other');
    await writePhoneBuild(dir, 'pixel-8', { recordDevice: 'pixel-8-pro' });
    const result = await runFlash([dir, '--device', 'pixel-8', '--dry-run']);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/FAILED\s+build-device\s+check 'build-device' failed: .*build\.json was built for pixel-8-pro, not for pixel-8/);
    await rm(dir, { recursive: true, force: true });
  });
});

describe('flash interrupted', () => {
  it('names the partition when the connection resets', async () => {
    const emulator = await startEmulator();
    emulator.interruptNextDownload(200 * 1024, 'reset');
    const failed = await flash(emulator);

    expect(failed.status).toBe(1);
    expect(failed.errorCode).toBe('FLASH_FAILED');
    expect(failed.error).toMatch(/^the transfer of boot\.img \(part 1 of 2\) to partition boot_b was interrupted: Status read failed \(Connection reset by peer\)\. boot_b may hold a partial image/);
    expect(failed.error).toContain('Slot a, which the device boots now, was not changed.');
    expect(emulator.activeSlot).toBe('a');

    const retried = await flash(emulator);
    expect(retried.status).toBe(0);
    const boot = await image('boot.img');
    expect(emulator.read('boot_b', boot.length).equals(boot)).toBe(true);
    expect(holdsPadded(emulator.read('system_b'), await image('system.img'))).toBe(true);
    expect(emulator.activeSlot).toBe('b');
  });

  it('times out when the connection closes mid-transfer', async () => {
    // fastboot 29.0.6 keeps waiting after an orderly close (FIN) from the device, so only the timeout ends it.
    const emulator = await startEmulator();
    emulator.interruptNextDownload(100 * 1024, 'close');
    const failed = await flash(emulator, '--timeout', '2');

    expect(failed.status).toBe(1);
    expect(failed.error).toMatch(/^the transfer of boot\.img \(part 1 of 2\) to partition boot_b was interrupted: no response from the device within 2 s\./);

    const retried = await flash(emulator);
    expect(retried.status).toBe(0);
    const boot = await image('boot.img');
    expect(emulator.read('boot_b', boot.length).equals(boot)).toBe(true);
  });

  it('stops before reboot when read-back differs', async () => {
    const emulator = await startEmulator({ ignoreSetActive: true });
    const result = await flash(emulator);
    expect(result.status).toBe(1);
    expect(result.error).toMatch(/^read back after flashing does not match the plan: current-slot is a, expected b; the device was not rebooted/);
    expect(emulator.commands).not.toContain('reboot');
  });
});

describe('flash with several USB devices', () => {
  // The emulator speaks TCP only. A stand-in `fastboot` on PATH lists two
  // "USB" serials for `devices` and hands every other call to the real
  // fastboot with the serial replaced by the matching emulator address.
  let fakeDir: string;
  let savedPath: string | undefined;

  beforeAll(async () => {
    fakeDir = await temporaryFolder('fake-usb');
    const script = [
      '#!/bin/sh',
      'if [ "$1" = devices ]; then printf "USB0001\\tfastboot\\nUSB0002\\tfastboot\\n"; exit 0; fi',
      'if [ "$1" = -s ]; then',
      '  case "$2" in USB0001) target="$FAKE_USB0001";; USB0002) target="$FAKE_USB0002";; *) target="$2";; esac',
      '  shift 2',
      '  exec /usr/bin/fastboot -s "$target" "$@"',
      'fi',
      'exec /usr/bin/fastboot "$@"',
    ].join('\n');
    await writeFile(path.join(fakeDir, 'fastboot'), `${script}\n`);
    await chmod(path.join(fakeDir, 'fastboot'), 0o755);
    savedPath = process.env.PATH;
    process.env.PATH = `${fakeDir}:${savedPath ?? ''}`;
  });

  afterAll(async () => {
    process.env.PATH = savedPath;
    delete process.env.FAKE_USB0001;
    delete process.env.FAKE_USB0002;
    await rm(fakeDir, { recursive: true, force: true });
  });

  it('asks for --serial when two are connected', async () => {
    const result = await runFlash([buildDir, '--device', 'pixel-8']);
    expect(result.status).toBe(1);
    expect(result.error).toMatch(/check 'mode' failed: 2 devices are in fastboot mode \(USB0001, USB0002\); pick one with --serial/);
  });

  it('rejects a serial that is not connected', async () => {
    const result = await runFlash([buildDir, '--device', 'pixel-8', '--serial', 'USB0009']);
    expect(result.status).toBe(1);
    expect(result.error).toMatch(/check 'mode' failed: no device with serial USB0009 is in fastboot mode \(listed: USB0001, USB0002\)/);
  });

  it('flashes only the device --serial names', async () => {
    const first = await startEmulator();
    const second = await startEmulator();
    process.env.FAKE_USB0001 = first.serial;
    process.env.FAKE_USB0002 = second.serial;
    const result = await runFlash([buildDir, '--device', 'pixel-8', '--serial', 'USB0002', '--log', path.join(buildDir, 'logs', 'usb.log')]);

    expect(result.error).toBeUndefined();
    expect(result.status).toBe(0);
    expect(first.commands).toEqual([]);
    const boot = await image('boot.img');
    expect(second.read('boot_b', boot.length).equals(boot)).toBe(true);
    const log = await readFile(path.join(buildDir, 'logs', 'usb.log'), 'utf8');
    expect(log).toContain('$ fastboot -s USB0002 flash boot_b');
  });
});
