/**
 * Step initramfs: a deterministic gzip-compressed newc cpio archive holding
 * busybox, the verifier with the system-stage public key it trusts, the
 * init script and the device nodes the kernel needs before devtmpfs is
 * mounted.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipDeterministic } from '../../images/compress.js';
import { writeCpio, type CpioEntry } from '../../images/cpio.js';
import type { Step } from '../step.js';
import { VERIFIER_FILE } from './verifier.js';

export const INITRAMFS_FILE = 'initramfs.cpio.gz';

/** Path of the trusted system-stage key inside the initramfs (raw 2,592-byte ML-DSA-87 key). */
export const EMBEDDED_SYSTEM_KEY_PATH = 'etc/qwamos/keys/system-stage.pub';

export interface InitramfsContents {
  busybox: Uint8Array;
  init: Uint8Array;
  verifier: Uint8Array;
  systemStagePublicKey: Uint8Array;
}

export function initramfsEntries(contents: InitramfsContents): CpioEntry[] {
  return [
    { path: 'bin', type: 'dir', mode: 0o755 },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: contents.busybox },
    { path: 'bin/qwamos-verify', type: 'file', mode: 0o755, data: contents.verifier },
    { path: 'bin/sh', type: 'symlink', mode: 0o777, target: 'busybox' },
    // The kernel opens /dev/console for init's stdio before devtmpfs exists.
    { path: 'dev', type: 'dir', mode: 0o755 },
    { path: 'dev/console', type: 'chardev', mode: 0o600, major: 5, minor: 1 },
    { path: 'etc', type: 'dir', mode: 0o755 },
    { path: 'etc/qwamos', type: 'dir', mode: 0o755 },
    { path: 'etc/qwamos/keys', type: 'dir', mode: 0o755 },
    { path: EMBEDDED_SYSTEM_KEY_PATH, type: 'file', mode: 0o644, data: contents.systemStagePublicKey },
    { path: 'init', type: 'file', mode: 0o755, data: contents.init },
    { path: 'proc', type: 'dir', mode: 0o755 },
    { path: 'run', type: 'dir', mode: 0o755 },
    { path: 'sys', type: 'dir', mode: 0o755 },
    { path: 'system', type: 'dir', mode: 0o755 },
  ];
}

export function initramfsStep(initPath: string, epoch: number, systemStagePublicKey: Uint8Array, systemStageKeyId: string): Step {
  return {
    id: 'initramfs',
    dependsOn: ['busybox', 'verifier'],
    version: 2,
    inputs: async () => ({ files: { init: initPath }, digests: { systemStageKey: systemStageKeyId }, config: { epoch } }),
    async run({ outputDir, dependencies }) {
      const archive = writeCpio(initramfsEntries({
        busybox: await readFile(path.join(dependencies.busybox!, 'busybox')),
        init: await readFile(initPath),
        verifier: await readFile(path.join(dependencies.verifier!, VERIFIER_FILE)),
        systemStagePublicKey,
      }), { mtime: epoch });
      await writeFile(path.join(outputDir, INITRAMFS_FILE), gzipDeterministic(archive));
    },
  };
}
