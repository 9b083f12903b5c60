/**
 * The vbmeta row of `qwamos-build verify`: the checks a locked bootloader
 * makes on the vbmeta image with libavb's rules, through verifyImage.
 */
import { createHash } from 'node:crypto';
import { QwamosError } from '../core/errors.js';
import { readImageVbmeta } from './avb-footer.js';
import { verifyImage, type VerifiedDescriptor, type VerifyImageReport } from './avb-verify-image.js';
import { VBMETA_FLAG_HASHTREE_DISABLED, VBMETA_FLAG_VERIFICATION_DISABLED } from './avb-vbmeta.js';
import type { AvbTrust } from './verify-build-keys.js';
import { outputPath } from './verify-build-layout.js';
import { addFailure, checkFailed, finishRow, newRow, runCheck, type StageRow } from './verify-build-row.js';
import { checkRollbackOf, type ChainContext } from './verify-build-stages.js';

/** Runs an AVB check and keeps the AvbFailureReason as the failure kind, with the verifier's message as reason. */
async function avbCheck(check: () => Promise<void>): Promise<void> {
  try {
    await check();
  } catch (error) {
    if (error instanceof QwamosError && error.code === 'VERIFY_FAILED' && typeof error.data.reason === 'string') {
      throw new QwamosError('VERIFY_FAILED', error.message, { data: { reason: error.message, kind: error.data.reason } });
    }
    throw error;
  }
}

/** Returns the descriptors of a verified vbmeta and of every chained vbmeta it leads to. */
function allDescriptors(report: VerifyImageReport): VerifiedDescriptor[] {
  return [...report.descriptors, ...report.chained.flatMap(allDescriptors)];
}

/**
 * Checks the vbmeta image as a locked bootloader does: the RSA signature
 * with the trusted AVB key, every hash descriptor against its partition
 * image, header flags 0, and the rollback index against the counter of its
 * location. Every partition the chain names must have a checked hash or
 * hashtree descriptor. Only the top-level rollback index is compared with
 * the counter store: chained partitions count in the bootloader's own
 * rollback locations. Returns undefined for a build without vbmeta unless
 * --avb-key asked for one.
 */
export async function checkVbmetaStage(context: ChainContext, avb: AvbTrust | undefined): Promise<StageRow | undefined> {
  const row = newRow('vbmeta');
  const vbmeta = context.build.chain.vbmeta;
  if (vbmeta === undefined) {
    if (!avb?.pinned) return undefined;
    addFailure(row, 'vbmeta missing', 'vbmeta missing (--avb-key was given, but build.json names no vbmeta image)');
    return finishRow(row);
  }

  const imagePath = outputPath(context.build, vbmeta.image);
  let parsed: Awaited<ReturnType<typeof readImageVbmeta>> | undefined;
  await runCheck(row, 'vbmeta header', () => avbCheck(async () => {
    parsed = await readImageVbmeta(imagePath);
  }));
  if (parsed === undefined) return finishRow(row);

  const header = parsed.vbmeta.header;
  context.vbmetaCmdline = parsed.vbmeta.descriptors.flatMap((descriptor) => (descriptor.kind === 'kernel_cmdline' ? [descriptor.kernelCmdline] : [])).join(' ');
  row.signerKeyId = createHash('sha256').update(parsed.vbmeta.publicKey).digest('hex');
  row.rollbackIndex = header.rollbackIndex.toString();
  row.rollbackIndexLocation = header.rollbackIndexLocation;

  if (avb?.failure) row.failures.push(avb.failure);
  const partitionImages = Object.fromEntries(Object.entries(vbmeta.partitions).map(([partition, file]) => [partition, outputPath(context.build, file)]));
  let verified: VerifyImageReport | undefined;
  if (avb?.blob) {
    await runCheck(row, 'signature and descriptors', () => avbCheck(async () => {
      // Chain descriptors (phone boot and init_boot) are followed to their
      // partition images and checked with the key each descriptor carries.
      verified = await verifyImage(imagePath, { expectedPublicKey: avb.blob, partitionImages, followChainPartitions: true });
    }));
  }

  if (verified !== undefined) {
    const descriptors = allDescriptors(verified);
    await runCheck(row, 'partitions covered', () => {
      for (const partition of Object.keys(vbmeta.partitions)) {
        const descriptor = descriptors.find((candidate) => candidate.partitionName === partition && candidate.kind !== 'chain_partition');
        if (descriptor?.result !== 'verified') checkFailed(`descriptor missing (the vbmeta has no checked hash or hashtree descriptor for partition '${partition}')`);
      }
    });
  }

  await runCheck(row, 'flags', () => {
    const disabling = VBMETA_FLAG_HASHTREE_DISABLED | VBMETA_FLAG_VERIFICATION_DISABLED;
    if ((header.flags & disabling) !== 0) checkFailed(`verification disabled (vbmeta header flags ${header.flags} disable verification or the hashtree)`);
  });
  await checkRollbackOf(context, row, header.rollbackIndex, header.rollbackIndexLocation);
  return finishRow(row);
}
