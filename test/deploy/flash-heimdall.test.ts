/**
 * Samsung flashing with heimdall. No Samsung phone exists here, so the
 * real `heimdall` (Debian heimdall-flash 1.4.2) can only show that it finds
 * no Download mode device; the flash itself runs against a stand-in
 * `heimdall` script on PATH that records each argv and prints what
 * heimdall 1.4.2 prints (PIT entries, upload lines).
 */
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parsePitPartitionNames } from '../../deploy/flash-heimdall.js';
import { runFlash, temporaryFolder, writePhoneBuild } from './flash-fixtures.js';

const PIT_NAMES = ['BOOTLOADER', 'EFS', 'BOOT', 'INIT_BOOT', 'VENDOR_BOOT', 'VBMETA', 'SUPER', 'USERDATA'];

let buildDir: string;
let fakeDir: string;
let callLog: string;

/** Returns the argv of every stand-in heimdall call so far, one array per call. */
async function heimdallCalls(): Promise<string[][]> {
  const text = await readFile(callLog, 'utf8').catch(() => '');
  return text.split('\n').filter((line) => line.length > 0).map((line) => line.split('\t').slice(0, -1));
}

function expectedFlashArgs(extra: string[] = []): string[] {
  return [
    'flash',
    '--BOOT', path.join(buildDir, 'boot.img'),
    '--INIT_BOOT', path.join(buildDir, 'init_boot.img'),
    '--VENDOR_BOOT', path.join(buildDir, 'vendor_boot.img'),
    '--VBMETA', path.join(buildDir, 'vbmeta.img'),
    '--resume',
    ...extra,
  ];
}

beforeAll(async () => {
  buildDir = await temporaryFolder('heimdall-build');
  await writePhoneBuild(buildDir, 'galaxy-s24-exynos');
  fakeDir = await temporaryFolder('fake-heimdall');
  callLog = path.join(fakeDir, 'calls.tsv');

  // FAKE_HEIMDALL selects the behaviour: ok, no-device, pit-without-vendor-boot, upload-fails.
  const entries = PIT_NAMES.map((name, index) => [
    `--- Entry #${index} ---`,
    'Binary Type: 0 (AP)',
    'Device Type: 8 (UFS)',
    `Identifier: ${index + 1}`,
    'Attributes: 5 (Read/Write)',
    'Update Attributes: 1 (FOTA)',
    'Partition Block Size/Offset: 8192',
    'Partition Block Count: 16384',
    'File Offset (Obsolete): 0',
    'File Size (Obsolete): 0',
    `Partition Name: ${name}`,
    `Flash Filename: ${name.toLowerCase()}.img`,
    'FOTA Filename: ',
    '',
  ].join('\n')).join('\n');
  await writeFile(path.join(fakeDir, 'pit.txt'), `Entry Count: ${PIT_NAMES.length}\n\n${entries}\n`);

  const script = `#!/bin/sh
for arg in "$@"; do printf '%s\\t' "$arg"; done >> "${callLog}"
printf '\\n' >> "${callLog}"
mode="\${FAKE_HEIMDALL:-ok}"
case "$1" in
  detect)
    if [ "$mode" = no-device ]; then echo "ERROR: Failed to detect compatible download-mode device." >&2; exit 1; fi
    echo "Device detected"; exit 0;;
  print-pit)
    echo "Downloading device's PIT file..."
    if [ "$mode" = pit-without-vendor-boot ]; then grep -v 'Partition Name: VENDOR_BOOT' "${fakeDir}/pit.txt"; else cat "${fakeDir}/pit.txt"; fi
    exit 0;;
  flash)
    echo "Initialising connection..."
    shift
    while [ $# -gt 0 ]; do
      case "$1" in
        --resume|--no-reboot) shift;;
        --*) name="\${1#--}"; echo "Uploading $name"; echo "100%"
             if [ "$mode" = upload-fails ] && [ "$name" = VENDOR_BOOT ]; then echo "ERROR: Failed to send file part packet!" >&2; echo "$name upload failed!" >&2; exit 1; fi
             echo "$name upload successful"; shift 2;;
        *) shift;;
      esac
    done
    echo "Ending session..."; exit 0;;
esac
exit 1
`;
  await writeFile(path.join(fakeDir, 'heimdall'), script);
  await chmod(path.join(fakeDir, 'heimdall'), 0o755);
});

afterAll(async () => {
  await rm(buildDir, { recursive: true, force: true });
  await rm(fakeDir, { recursive: true, force: true });
});

afterEach(async () => {
  await rm(callLog, { force: true });
  delete process.env.FAKE_HEIMDALL;
});

/** Runs flash with the stand-in heimdall first on PATH. */
async function flashWithFake(mode: string, extra: string[] = []): ReturnType<typeof runFlash> {
  const savedPath = process.env.PATH;
  process.env.PATH = `${fakeDir}:${savedPath ?? ''}`;
  process.env.FAKE_HEIMDALL = mode;
  try {
    return await runFlash([buildDir, '--device', 'galaxy-s24-exynos', '--log', path.join(buildDir, 'logs', 'heimdall.log'), ...extra]);
  } finally {
    process.env.PATH = savedPath;
  }
}

describe('heimdall plan', () => {
  it('builds the flash argv from the PIT names', async () => {
    const result = await runFlash([buildDir, '--device', 'galaxy-s24-exynos', '--dry-run', '--json']);
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout) as { heimdallArgs: string[]; plan: { slot: unknown; steps: { kind: string; partition?: string; mode?: string }[] } };
    expect(report.heimdallArgs).toEqual(expectedFlashArgs());
    expect(report.plan.slot).toBeNull();
    expect(report.plan.steps.map((step) => step.partition ?? step.kind)).toEqual(['BOOT', 'INIT_BOOT', 'VENDOR_BOOT', 'VBMETA', 'reboot']);
    expect(report.plan.steps.every((step) => step.kind !== 'flash' || step.mode === 'download')).toBe(true);
  });

  it('leaves out logical partitions and says so', async () => {
    const result = await runFlash([buildDir, '--device', 'galaxy-s24-exynos', '--dry-run']);
    expect(result.stdout).toContain('warning: system.img is not flashed: system is a logical partition inside super, which heimdall cannot write');
    expect(result.stdout).not.toMatch(/^\d+\s+flash\s+\S+\s+\S+\s+system\.img/m);
  });

  it('adds --no-reboot when asked', async () => {
    const result = await runFlash([buildDir, '--device', 'galaxy-s24-exynos', '--dry-run', '--no-reboot']);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`heimdall ${expectedFlashArgs(['--no-reboot']).join(' ')}`);
  });

  it('has no re-lock step and no AVB key', async () => {
    const result = await runFlash([buildDir, '--device', 'galaxy-s24-exynos', '--dry-run', '--json']);
    const report = JSON.parse(result.stdout) as { heimdallArgs: string[] };
    expect(report.heimdallArgs.some((arg) => /avb_custom_key|AVB_CUSTOM_KEY/.test(arg))).toBe(false);
  });

  it('rejects --wipe', async () => {
    const result = await runFlash([buildDir, '--device', 'galaxy-s24-exynos', '--wipe', '--dry-run']);
    expect(result.status).toBe(2);
    expect(result.error).toMatch(/--erase and --wipe need fastboot, but galaxy-s24-exynos is flashed with heimdall/);
  });

  it('parses partition names from print-pit output', async () => {
    const names = parsePitPartitionNames(await readFile(path.join(fakeDir, 'pit.txt'), 'utf8'));
    expect(names).toEqual(PIT_NAMES);
  });
});

describe('heimdall flash', () => {
  it('calls heimdall with exactly the planned argv', async () => {
    const result = await flashWithFake('ok');
    expect(result.error).toBeUndefined();
    expect(result.status).toBe(0);
    expect(await heimdallCalls()).toEqual([['detect'], ['print-pit', '--no-reboot'], expectedFlashArgs()]);
    expect(result.stderr).toContain('flash: wrote VENDOR_BOOT');

    const log = await readFile(path.join(buildDir, 'logs', 'heimdall.log'), 'utf8');
    expect(log).toContain('$ heimdall detect');
    expect(log).toContain(`$ heimdall ${expectedFlashArgs().join(' ')}`);
    expect(log).toContain('VBMETA upload successful');
  });

  it('rejects a phone not in Download mode', async () => {
    const result = await flashWithFake('no-device');
    expect(result.status).toBe(1);
    expect(result.error).toMatch(/^refusing to flash: check 'download-mode' failed: heimdall detects no device in Download mode \(ERROR: Failed to detect compatible download-mode device\.\)/);
    expect(await heimdallCalls()).toEqual([['detect']]);
  });

  it('rejects a PIT without a planned partition', async () => {
    const result = await flashWithFake('pit-without-vendor-boot', ['--force']);
    expect(result.status).toBe(1);
    expect(result.error).toMatch(/check 'pit' failed: the device's PIT has no partition VENDOR_BOOT \(it lists 7 partitions\); this is not a galaxy-s24-exynos/);
    expect((await heimdallCalls()).map((call) => call[0])).toEqual(['detect', 'print-pit']);
  });

  it('names the partition when an upload fails', async () => {
    const result = await flashWithFake('upload-fails');
    expect(result.status).toBe(1);
    expect(result.errorCode).toBe('FLASH_FAILED');
    expect(result.error).toMatch(/^heimdall flash failed while writing VENDOR_BOOT: VENDOR_BOOT upload failed!/);
  });

  it('checks the build before contacting the phone', async () => {
    const failing = async () => ({ ok: false, failures: ['vbmeta.img: signature does not match'] });
    const savedPath = process.env.PATH;
    process.env.PATH = `${fakeDir}:${savedPath ?? ''}`;
    try {
      const result = await runFlash([buildDir, '--device', 'galaxy-s24-exynos'], failing);
      expect(result.status).toBe(1);
      expect(result.error).toMatch(/check 'verify' failed/);
    } finally {
      process.env.PATH = savedPath;
    }
    expect(await heimdallCalls()).toEqual([]);
  });

  it('finds no Download mode device with the real heimdall', async () => {
    const result = await runFlash([buildDir, '--device', 'galaxy-s24-exynos', '--log', path.join(buildDir, 'logs', 'real-heimdall.log')]);
    expect(result.status).toBe(1);
    expect(result.error).toMatch(/check 'download-mode' failed: heimdall detects no device in Download mode \(ERROR: Failed to detect compatible download-mode device\.\)/);
  });
});
