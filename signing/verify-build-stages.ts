/**
 * The checks of each stage manifest of a build output, as the boot chain
 * runs them: its ML-DSA-87 signature and signer, rollback index, image
 * digest and, for the system image, dm-verity parameters. None of the
 * checks writes to the folder or to the counter store. The vbmeta checks
 * are in signing/verify-build-vbmeta.ts.
 */
import { stat } from 'node:fs/promises';
import { QwamosError } from '../core/errors.js';
import { findCpioEntry, readCpio } from '../images/cpio-read.js';
import { MANIFEST_MAX_SIZE, type StageManifest } from './manifest.js';
import { hashImage, readVerityRootDigest } from './manifest-image.js';
import { parseManifest } from './manifest-parse.js';
import { checkNextStageSigner, verifyManifest } from './manifest-verify.js';
import { MLDSA87_PUBLIC_KEY_SIZE } from './mldsa.js';
import type { ChainKey } from './verify-build-keys.js';
import {
  BOOT_CONFIG_FILE,
  NEXT_ROLE,
  VERITY_RECORD_FILE,
  outputPath,
  outputExists,
  readOutputFile,
  readOutputJson,
  type BuildOutput,
  type ChainKeyRole,
  type ChainStage,
} from './verify-build-layout.js';
import { addFailure, checkFailed, finishRow, newRow, runCheck, type StageRow } from './verify-build-row.js';
import { checkDmModCreate, checkVerityRecord, splitKernelCmdline } from './verify-build-verity.js';

export interface ChainContext {
  build: BuildOutput;
  keys: ReadonlyMap<ChainKeyRole, ChainKey>;
  /** Counter store values by location; undefined skips the rollback checks. */
  counters?: readonly bigint[];
  /** Manifests whose signature verified with a trusted key, by stage index. */
  authentic: (StageManifest | undefined)[];
  /** The kernel command line of the vbmeta's kernel_cmdline descriptors, which a phone bootloader appends. */
  vbmetaCmdline?: string;
}

function keyOf(context: ChainContext, role: ChainKeyRole): ChainKey {
  const key = context.keys.get(role);
  if (key === undefined) throw new Error(`no ${role} key loaded`);
  return key;
}

/** Compares a rollback index with the counter of its location, or records the check as skipped without --counters. */
export async function checkRollbackOf(context: ChainContext, row: StageRow, index: bigint, location: number): Promise<void> {
  const counters = context.counters;
  if (counters === undefined) {
    row.skipped.push('rollback (no --counters)');
    return;
  }
  await runCheck(row, 'rollback', () => {
    const stored = counters[location] ?? 0n;
    if (index < stored) checkFailed(`rollback (index ${index} < stored ${stored})`);
  });
}

/**
 * Checks stage `index` of the chain. The manifest must parse, verify with
 * the certified key of its signer role and name the device profile. Its
 * signer must be one the previous stage allows, and it may list only the
 * certified key of the next role as next-stage signer. It must pass the
 * rollback check and describe its image exactly (size, SHA-512, dm-verity
 * root).
 */
export async function checkManifestStage(context: ChainContext, index: number): Promise<StageRow> {
  const stage = context.build.chain.stages[index]!;
  const row = newRow(stage.stage);

  let bytes: Buffer | undefined;
  let manifest: StageManifest | undefined;
  await runCheck(row, 'manifest', async () => {
    bytes = await readOutputFile(context.build, stage.manifest);
    manifest = parseManifest(bytes, outputPath(context.build, stage.manifest));
  });
  if (manifest === undefined || bytes === undefined) return finishRow(row);

  row.signerKeyId = Buffer.from(manifest.signerKeyId).toString('hex');
  row.rollbackIndex = manifest.rollbackIndex.toString();
  row.rollbackIndexLocation = manifest.rollbackIndexLocation;
  row.imageSha512 = Buffer.from(manifest.imageSha512).toString('hex');
  if (manifest.verity) row.verityRootDigest = Buffer.from(manifest.verity.rootDigest).toString('hex');

  if (await checkSignature(context, stage, bytes, row)) context.authentic[index] = manifest;
  await checkSigners(context, index, manifest, row);
  await checkRollbackOf(context, row, manifest.rollbackIndex, manifest.rollbackIndexLocation);
  await checkImage(context, stage, manifest, row);
  if (stage.manifestPartition !== undefined) await runCheck(row, 'manifest partition', () => checkManifestPartition(context.build, stage.manifestPartition!, bytes!));
  if (stage.embeddedPublicKey !== undefined) await runCheck(row, 'embedded key', () => checkEmbeddedKey(context, index));
  await checkBootConfig(context.build, stage, row);
  return finishRow(row);
}

/** Checks the signature with the signer role's key; returns true when it verified and the key is trusted. */
async function checkSignature(context: ChainContext, stage: ChainStage, bytes: Buffer, row: StageRow): Promise<boolean> {
  const key = keyOf(context, stage.signer);
  if (key.failure) row.failures.push(key.failure);
  if (key.publicKey === undefined) return false;

  if (stage.signer !== 'root' && key.failure === undefined) {
    if (key.certificate) row.checks.push('signer certificate');
    else row.skipped.push(`signer certificate (build.json names no ${stage.signer} certificate)`);
  }

  const verified = await runCheck(row, 'signature', () => {
    verifyManifest(bytes, { stage: stage.stage, publicKeys: [key.publicKey!], source: outputPath(context.build, stage.manifest) });
  });
  return verified && key.failure === undefined;
}

async function checkSigners(context: ChainContext, index: number, manifest: StageManifest, row: StageRow): Promise<void> {
  const stages = context.build.chain.stages;
  const stage = stages[index]!;

  await runCheck(row, 'device profile', () => {
    if (manifest.deviceProfile !== context.build.chain.deviceProfile) checkFailed(`wrong device profile (manifest is for ${manifest.deviceProfile})`);
  });

  // The first stage of a new signer must be allowed by the stage before it.
  const previous = stages[index - 1];
  if (previous !== undefined && previous.signer !== stage.signer) {
    await runCheck(row, 'next-stage signer', () => {
      const parent = context.authentic[index - 1];
      if (parent === undefined) checkFailed(`key not allowed (the ${previous.stage} manifest failed verification, so it allows no signer for this stage)`);
      checkNextStageSigner(parent, manifest);
    });
  }

  const nextRole = NEXT_ROLE[stage.signer];
  if (nextRole === undefined) return;
  const nextKey = keyOf(context, nextRole);
  await runCheck(row, 'next-stage keys', () => {
    for (const keyId of manifest.nextStageKeyIds) {
      const hex = Buffer.from(keyId).toString('hex');
      if (nextKey.keyId === undefined || !nextKey.keyId.equals(keyId)) checkFailed(`next-stage key not certified (key id ${hex} is not the ${nextRole} key)`);
      if (nextKey.failure) checkFailed(`next-stage key not certified (key id ${hex} is the ${nextRole} key, which is not trusted: ${nextKey.failure.reason})`);
    }
    // The last stage hands over to a stage outside this folder, so nothing
    // else checks that it names the next signer.
    const isLast = index === stages.length - 1;
    if (isLast && !manifest.nextStageKeyIds.some((keyId) => nextKey.keyId?.equals(keyId))) {
      checkFailed(`next-stage key missing (the ${nextRole} key ${nextKey.keyId?.toString('hex') ?? 'from ' + nextKey.file} is not listed)`);
    }
  });
}

/**
 * Checks the image file: the manifest's image size (exactly, except that an
 * AVB footer may follow a verity image), its SHA-512, and the dm-verity
 * root and parameters.
 */
async function checkImage(context: ChainContext, stage: ChainStage, manifest: StageManifest, row: StageRow): Promise<void> {
  const imagePath = outputPath(context.build, stage.image);
  const sizeOk = await runCheck(row, 'image size', async () => {
    const size = await stat(imagePath).then((status) => BigInt(status.size), (error: NodeJS.ErrnoException) => checkFailed(`cannot read (${imagePath}: ${error.code ?? error.message})`));
    if (size < manifest.imageSize) checkFailed(`image too small (${size} < ${manifest.imageSize} bytes)`);
    // Bytes after the signed span would reach the kernel unchecked: an
    // initramfs with an archive appended is unpacked in full. dm-verity
    // reads only the data and tree of a verity image, so there an AVB
    // footer may follow.
    if (size > manifest.imageSize && manifest.verity === undefined) {
      checkFailed(`image size mismatch (${imagePath} has ${size} bytes, the manifest covers ${manifest.imageSize})`);
    }
  });
  if (!sizeOk) return;

  await runCheck(row, 'image sha512', async () => {
    const { imageSha512 } = await hashImage(imagePath, manifest.imageSize);
    if (!Buffer.from(imageSha512).equals(manifest.imageSha512)) checkFailed('digest mismatch');
  });

  const verity = manifest.verity;
  if (verity === undefined) {
    if (stage.verity) addFailure(row, 'not a verity image', 'not a verity image');
    return;
  }
  await runCheck(row, 'verity root', async () => {
    const rootDigest = await readVerityRootDigest(imagePath, verity);
    if (!rootDigest.equals(verity.rootDigest)) checkFailed('verity root hash mismatch');
  });
  if (!stage.verity) return;

  // Host builds write verity.json and boot.json; phone builds write neither.
  if (await outputExists(context.build, VERITY_RECORD_FILE)) {
    await runCheck(row, 'verity.json', async () => {
      checkVerityRecord(verity, await readOutputJson(context.build, VERITY_RECORD_FILE), VERITY_RECORD_FILE);
    });
  } else {
    row.skipped.push(`verity.json (no ${VERITY_RECORD_FILE} in the build output)`);
  }

  if (await outputExists(context.build, BOOT_CONFIG_FILE)) {
    await runCheck(row, 'dm-mod.create', async () => {
      const bootConfig = (await readOutputJson(context.build, BOOT_CONFIG_FILE)) as { cmdline?: unknown } | null;
      checkDmModCreate(verity, bootConfig?.cmdline, BOOT_CONFIG_FILE);
      checkDeviceParameter(context, bootConfig?.cmdline as string, BOOT_CONFIG_FILE);
    });
  } else {
    row.skipped.push(`dm-mod.create (no ${BOOT_CONFIG_FILE} in the build output)`);
  }

  // A phone bootloader passes the vbmeta's command line, so a dm-verity
  // table there must match the manifest too.
  const vbmetaCmdline = context.vbmetaCmdline ?? '';
  if (vbmetaCmdline.includes('dm-mod.create=')) {
    await runCheck(row, 'vbmeta dm-mod.create', () => {
      checkDmModCreate(verity, vbmetaCmdline, 'vbmeta kernel cmdline');
      checkDeviceParameter(context, vbmetaCmdline, 'vbmeta kernel cmdline');
    });
  }
}

/**
 * The initramfs passes `qwamos.device=` from the kernel command line to
 * qwamos-verify as the expected device profile, so when the parameter is
 * present it must name the chain's device profile.
 */
function checkDeviceParameter(context: ChainContext, cmdline: string, where: string): void {
  const expected = context.build.chain.deviceProfile;
  for (const parameter of splitKernelCmdline(cmdline)) {
    if (parameter.startsWith('qwamos.device=') && parameter !== `qwamos.device=${expected}`) {
      checkFailed(`wrong device profile (${where} has ${parameter}, the chain is for ${expected})`);
    }
  }
}

/** Fails unless the manifest partition is the manifest followed by zero bytes up to 8,192 bytes. */
async function checkManifestPartition(build: BuildOutput, name: string, manifestBytes: Buffer): Promise<void> {
  const partition = await readOutputFile(build, name);
  const where = outputPath(build, name);
  if (partition.length !== MANIFEST_MAX_SIZE) checkFailed(`manifest partition mismatch (${where} has ${partition.length} bytes, expected ${MANIFEST_MAX_SIZE})`);
  if (!partition.subarray(0, manifestBytes.length).equals(manifestBytes)) checkFailed(`manifest partition mismatch (${where} does not start with the stage manifest)`);
  const nonZero = partition.subarray(manifestBytes.length).findIndex((byte) => byte !== 0);
  if (nonZero >= 0) checkFailed(`manifest partition mismatch (${where} has a non-zero byte at offset ${manifestBytes.length + nonZero} after the manifest)`);
}

/**
 * Fails unless the raw public key that the stage's image (a cpio archive)
 * carries for the next stage's verifier is the key of the next stage's
 * signer, and that key is certified when the build names a certificate.
 * Its parent folders must be folders, not symlinks.
 */
async function checkEmbeddedKey(context: ChainContext, index: number): Promise<void> {
  const stages = context.build.chain.stages;
  const stage = stages[index]!;
  const keyPath = stage.embeddedPublicKey!;
  const nextRole = stages[index + 1]?.signer ?? NEXT_ROLE[stage.signer];
  if (nextRole === undefined) checkFailed(`embedded key mismatch (no stage follows ${stage.stage} to use ${keyPath})`);

  const imagePath = outputPath(context.build, stage.image);
  let entries: ReturnType<typeof readCpio>;
  try {
    entries = readCpio(await readOutputFile(context.build, stage.image), { source: imagePath });
  } catch (error) {
    if (!(error instanceof QwamosError) || error.code === 'VERIFY_FAILED') throw error;
    checkFailed(`initramfs invalid (${error.message})`);
  }

  const parts = keyPath.split('/').filter((part) => part !== '' && part !== '.');
  for (let depth = 1; depth < parts.length; depth++) {
    const parent = findCpioEntry(entries, parts.slice(0, depth).join('/'));
    if (parent !== undefined && parent.type !== 'dir') checkFailed(`embedded key mismatch (${parts.slice(0, depth).join('/')} in ${imagePath} is a ${parent.type}, not a folder)`);
  }
  const entry = findCpioEntry(entries, keyPath);
  if (entry === undefined) checkFailed(`embedded key mismatch (${keyPath} is missing from ${imagePath})`);
  if (entry.type !== 'file' || entry.nlink !== 1) checkFailed(`embedded key mismatch (${keyPath} in ${imagePath} is a ${entry.type} with ${entry.nlink} links, not a plain file)`);
  if (entry.data.length !== MLDSA87_PUBLIC_KEY_SIZE) checkFailed(`embedded key mismatch (${keyPath} has ${entry.data.length} bytes, a raw ML-DSA-87 public key has ${MLDSA87_PUBLIC_KEY_SIZE})`);

  const certified = keyOf(context, nextRole);
  if (certified.publicKey === undefined) checkFailed(`embedded key mismatch (the ${nextRole} key to compare with is unavailable: ${certified.failure?.reason ?? certified.file})`);
  if (!entry.data.equals(certified.publicKey)) checkFailed(`embedded key mismatch (${keyPath} is not the ${nextRole} key of ${certified.file})`);
  if (certified.failure) checkFailed(`embedded key mismatch (${keyPath} is the ${nextRole} key, which is not certified: ${certified.failure.reason})`);
}

/** boot.json, when the build writes one, must boot the checked files: the kernel and initramfs images, and every other stage image as a disk. */
async function checkBootConfig(build: BuildOutput, stage: ChainStage, row: StageRow): Promise<void> {
  if (!(await outputExists(build, BOOT_CONFIG_FILE))) {
    row.skipped.push(`boot config (no ${BOOT_CONFIG_FILE} in the build output)`);
    return;
  }
  await runCheck(row, 'boot config', async () => {
    const config = (await readOutputJson(build, BOOT_CONFIG_FILE)) as { kernel?: unknown; initramfs?: unknown; disks?: { file?: unknown }[] } | null;
    checkBootedFiles(stage, config);
  });
}

function checkBootedFiles(stage: ChainStage, config: { kernel?: unknown; initramfs?: unknown; disks?: { file?: unknown }[] } | null): void {
  const disks = Array.isArray(config?.disks) ? config.disks.map((disk) => disk?.file) : [];

  if (stage.stage === 'kernel' || stage.stage === 'initramfs') {
    const booted = config?.[stage.stage];
    if (booted !== stage.image) checkFailed(`boot config mismatch (${BOOT_CONFIG_FILE} boots ${stage.stage} ${JSON.stringify(booted)}, not the checked ${stage.image})`);
  } else if (!disks.includes(stage.image)) {
    checkFailed(`boot config mismatch (${BOOT_CONFIG_FILE} attaches no disk ${stage.image})`);
  }
}
