import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { runBootTest } from '../../deploy/boot-test.js';
import { ConsoleWatcher } from '../../deploy/console-markers.js';

describe('boot-test input errors', () => {
  it('names a folder without boot.json', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'qwamos-boot-'));
    const error = await runBootTest(dir, { timeoutSeconds: 5 }).then(() => undefined, (caught: unknown) => caught) as QwamosError;

    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain("is not a build output folder; run 'qwamos-build build' first");
  });

  it('names the Debian package when QEMU is missing', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'qwamos-boot-'));
    await writeFile(path.join(dir, 'boot.json'), JSON.stringify({
      formatVersion: 1, device: 'qemu-virt-arm64', arch: 'arm64', kernel: 'Image', initramfs: 'initramfs.cpio.gz', cmdline: '', disks: [],
      qemu: { binary: 'qemu-system-aarch64-not-installed', machine: 'virt', cpu: 'max', memoryMiB: 256 },
    }));
    const error = await runBootTest(dir, { timeoutSeconds: 5 }).then(() => undefined, (caught: unknown) => caught) as QwamosError;

    expect(error.code).toBe('TOOL_MISSING');
    expect(error.message).toContain('qemu-system-aarch64-not-installed is not installed');
  });
});

describe('console watcher', () => {
  const boot = [
    'Booting Linux on physical CPU 0x0000000000 [0x000f0510]',
    'qwamos-init: /dev/kvm present',
    'qwamos-init: system image mounted read-only through dm-verity on /dev/dm-0',
    'qwamos-runtime: started, version 0.1.0',
  ];

  it('passes when every marker appears in order', () => {
    const watcher = new ConsoleWatcher();
    boot.forEach((line, index) => watcher.feed(line, index));
    expect(watcher.passed).toBe(true);
  });

  it('does not pass when markers come out of order', () => {
    const watcher = new ConsoleWatcher();
    [boot[0]!, boot[2]!, boot[1]!, boot[3]!].forEach((line, index) => watcher.feed(line, index));
    expect(watcher.passed).toBe(false);
    expect(watcher.missing?.id).toBe('system');
  });

  it('names a dm-verity corruption before the init halt', () => {
    const watcher = new ConsoleWatcher();
    watcher.feed(boot[0]!, 0);
    watcher.feed('device-mapper: verity: 254:0: data block 0 is corrupted', 1);
    watcher.feed('qwamos-init: boot halted: mounting /dev/dm-0 failed', 2);
    expect(watcher.failure?.kind).toBe('verity-error');
  });

  it('fails on a kernel panic', () => {
    const watcher = new ConsoleWatcher();
    expect(watcher.feed('Kernel panic - not syncing: No working init found.', 0)).toBe(true);
    expect(watcher.failure?.kind).toBe('kernel-panic');
  });
});
