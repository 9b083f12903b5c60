/**
 * Step initramfs: a deterministic gzip-compressed newc cpio archive holding
 * busybox, the init script and the device nodes the kernel needs before
 * devtmpfs is mounted.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipDeterministic } from '../../images/compress.js';
import { writeCpio, type CpioEntry } from '../../images/cpio.js';
import type { Step } from '../step.js';

export const INITRAMFS_FILE = 'initramfs.cpio.gz';

export function initramfsEntries(busybox: Uint8Array, init: Uint8Array): CpioEntry[] {
  return [
    { path: 'bin', type: 'dir', mode: 0o755 },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: busybox },
    { path: 'bin/sh', type: 'symlink', mode: 0o777, target: 'busybox' },
    // The kernel opens /dev/console for init's stdio before devtmpfs exists.
    { path: 'dev', type: 'dir', mode: 0o755 },
    { path: 'dev/console', type: 'chardev', mode: 0o600, major: 5, minor: 1 },
    { path: 'init', type: 'file', mode: 0o755, data: init },
    { path: 'proc', type: 'dir', mode: 0o755 },
    { path: 'sys', type: 'dir', mode: 0o755 },
    { path: 'system', type: 'dir', mode: 0o755 },
  ];
}

export function initramfsStep(initPath: string, epoch: number): Step {
  return {
    id: 'initramfs',
    dependsOn: ['busybox'],
    version: 1,
    inputs: async () => ({ files: { init: initPath }, config: { epoch } }),
    async run({ outputDir, dependencies }) {
      const busybox = await readFile(path.join(dependencies.busybox!, 'busybox'));
      const init = await readFile(initPath);
      const archive = writeCpio(initramfsEntries(busybox, init), { mtime: epoch });
      await writeFile(path.join(outputDir, INITRAMFS_FILE), gzipDeterministic(archive));
    },
  };
}
