/**
 * boot.json: what a build output folder needs to be booted, written by the
 * build and read by `boot-test`. Paths are relative to the folder.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';

export interface BootDisk {
  /** Image file in the output folder. */
  file: string;
  /** QEMU device model, such as virtio-blk-device. */
  device: string;
  readOnly: boolean;
}

export interface BootConfig {
  formatVersion: 1;
  device: string;
  arch: 'arm64' | 'x86_64';
  kernel: string;
  initramfs: string;
  cmdline: string;
  disks: BootDisk[];
  /** QEMU device model for the rollback counter store disk that boot-test attaches last. */
  counterStoreDevice?: string;
  /** Stage 0 as a bootloader checks it: vbmeta over the kernel and initramfs. */
  vbmeta?: { image: string; partitions: Record<string, string>; publicKey: string; rollbackIndexLocation: number };
  qemu: { binary: string; machine: string; cpu: string; memoryMiB: number };
}

export const BOOT_CONFIG_FILE = 'boot.json';

export async function readBootConfig(dir: string): Promise<BootConfig> {
  const file = path.join(dir, BOOT_CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new QwamosError('INPUT_NOT_FOUND', `${file} not found: '${dir}' is not a build output folder; run 'qwamos-build build' first`);
    }
    throw error;
  }

  let config: BootConfig;
  try {
    config = JSON.parse(text) as BootConfig;
  } catch (error) {
    throw new QwamosError('INPUT_INVALID', `${file} is not valid JSON (${(error as Error).message}); rebuild the folder with 'qwamos-build build'`);
  }
  if (config.formatVersion !== 1) {
    throw new QwamosError('INPUT_INVALID', `${file}: unsupported formatVersion ${String(config.formatVersion)}; rebuild the folder with this version of qwamos-build`);
  }
  return config;
}
