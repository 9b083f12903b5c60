/**
 * Stage 0 as a phone bootloader checks it, for QEMU, which has no
 * bootloader: the vbmeta RSA signature against the trusted AVB key, the
 * kernel and initramfs against their hash descriptors, and the rollback
 * index against the counter store. The kernel command line then comes from
 * the verified vbmeta, as a bootloader takes it, not from boot.json.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isQwamosError } from '../core/errors.js';
import { verifyImage } from '../signing/avb-verify-image.js';
import type { BootConfig } from './boot-config.js';

export type Stage0Result =
  | { ok: true; cmdline: string; rollbackIndex: bigint }
  | { ok: false; reason: string };

export async function checkStage0(dir: string, config: BootConfig, counters: readonly bigint[]): Promise<Stage0Result> {
  const vbmeta = config.vbmeta;
  if (!vbmeta) return { ok: true, cmdline: config.cmdline, rollbackIndex: 0n };

  const partitionImages = Object.fromEntries(Object.entries(vbmeta.partitions).map(([name, file]) => [name, path.join(dir, file)]));
  try {
    const report = await verifyImage(path.join(dir, vbmeta.image), {
      expectedPublicKey: await readFile(path.join(dir, vbmeta.publicKey)),
      rollbackIndexes: new Map(counters.map((value, location) => [location, value])),
      partitionImages,
    });
    const cmdlines = report.verified.vbmeta.descriptors.flatMap((descriptor) => (descriptor.kind === 'kernel_cmdline' ? [descriptor.kernelCmdline] : []));
    return { ok: true, cmdline: cmdlines.join(' '), rollbackIndex: report.verified.rollbackIndex };
  } catch (error) {
    if (isQwamosError(error, 'VERIFY_FAILED') || isQwamosError(error, 'INPUT_INVALID') || isQwamosError(error, 'INPUT_NOT_FOUND')) {
      return { ok: false, reason: error.message };
    }
    throw error;
  }
}
