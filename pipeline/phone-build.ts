/**
 * The phone build: the host recipe's initramfs and system image, packed and
 * signed as the device profile's partitions, from a prebuilt kernel Image
 * (phone kernel sources are not pinned here).
 */
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { runGraph } from './graph.js';
import type { HostBuildResult } from './host-build.js';
import { lazyFetch, signingFor, type BuildOptions } from './build-options.js';
import { findLockedInput, loadLockfile } from './lockfile.js';
import type { DeviceProfile } from './profiles.js';
import { publishBuild, type PublishedFile } from './publish.js';
import { loadRecipe, sourceDateEpoch } from './recipes.js';
import { publicKeyFiles, rawMldsaPublicKey, type SigningSetup } from './signing-setup.js';
import { AVB_CUSTOM_KEY_FILE, SPARSE_DIR, androidImagesStep } from './steps/android-images.js';
import { busyboxStep } from './steps/busybox.js';
import { initramfsStep } from './steps/initramfs.js';
import { systemImageStep } from './steps/system-image.js';
import { verifierStep } from './steps/verifier.js';
import { recordSigning } from '../signing/ledger.js';

export interface PhoneBuildOptions extends BuildOptions {
  /** Prebuilt kernel Image for the device. */
  kernelImage?: string;
}

const PARTITION_IMAGES = ['boot.img', 'init_boot.img', 'vendor_boot.img', 'system.img', 'vbmeta.img'];
const MANIFESTS = ['boot.manifest', 'init_boot.manifest', 'system.manifest'];


function chainRecord(profile: DeviceProfile): Record<string, unknown> {
  return {
    formatVersion: 1,
    deviceProfile: profile.id,
    vbmeta: { image: 'vbmeta.img', publicKey: AVB_CUSTOM_KEY_FILE, partitions: { boot: 'boot.img', init_boot: 'init_boot.img', vendor_boot: 'vendor_boot.img', system: 'system.img' } },
    stages: [
      { stage: 'kernel', manifest: 'boot.manifest', image: 'boot.img', signer: 'root' },
      { stage: 'initramfs', manifest: 'init_boot.manifest', image: 'init_boot.img', signer: 'root' },
      { stage: 'system', manifest: 'system.manifest', image: 'system.img', signer: 'system-stage', verity: true },
    ],
    keys: {
      root: 'keys/root.pub',
      'system-stage': 'keys/system-stage.pub',
      'guest-stage': 'keys/guest-stage.pub',
      'system-stage-certificate': 'keys/system-stage.cert',
      'guest-stage-certificate': 'keys/guest-stage.cert',
    },
  };
}

async function recordRollbackIndexes(profile: DeviceProfile, signing: SigningSetup, rollbackIndex: number, allowRollback: boolean): Promise<void> {
  const locations = [0, 1, ...(profile.android?.avb.chainedPartitions ?? []).map((chain) => chain.rollbackIndexLocation)];
  for (const location of [...new Set(locations)]) {
    const key = location === 1 ? signing.systemStage : signing.root;
    await recordSigning(signing.store.dir, { product: 'qwamos', device: profile.id, location, rollbackIndex, key, allowRollback });
  }
}

/** Offset and value of the arm64 Image header magic, "ARM\x64" (Linux Documentation/arm64/booting.rst). */
const ARM64_IMAGE_MAGIC_OFFSET = 56;
const ARM64_IMAGE_MAGIC = Buffer.from('ARM\x64', 'latin1');

/** Rejects a --kernel file that is not an uncompressed arm64 kernel Image. */
async function checkArm64Image(file: string): Promise<void> {
  const header = Buffer.alloc(64);
  let length: number;
  try {
    const handle = await open(file, 'r');
    length = (await handle.read(header, 0, 64, 0)).bytesRead;
    await handle.close();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `--kernel ${file} not found`);
    throw error;
  }
  const magic = header.subarray(ARM64_IMAGE_MAGIC_OFFSET, ARM64_IMAGE_MAGIC_OFFSET + 4);
  if (length < 64 || !magic.equals(ARM64_IMAGE_MAGIC)) {
    throw new QwamosError('INPUT_INVALID', `--kernel ${file} is not an arm64 kernel Image (no "ARM\\x64" magic at byte 56); give arch/arm64/boot/Image, not Image.gz or another file`);
  }
}

export async function buildPhoneImages(profile: DeviceProfile, options: PhoneBuildOptions): Promise<HostBuildResult> {
  if (!options.kernelImage) {
    throw new QwamosError('USAGE', `device '${profile.id}' has no pinned kernel source (its kernel lives in ${profile.kernel.source.remote?.repository ?? 'an external repository'}); give a kernel Image with --kernel IMAGE`);
  }
  await checkArm64Image(options.kernelImage);
  const recipe = await loadRecipe(options.recipeFile);
  const epoch = sourceDateEpoch(recipe);
  const lockfile = await loadLockfile(options.lockfilePath);
  const busyboxInput = findLockedInput(lockfile, recipe.initramfs.busyboxInput, options.lockfilePath);
  const signing = await signingFor(options);
  const rollbackIndex = options.rollbackIndex ?? 0;
  await recordRollbackIndexes(profile, signing, rollbackIndex, options.allowRollback ?? false);

  const cmdline = [`qwamos.device=${profile.id}`, ...(recipe.kernelCmdline ?? [])].join(' ');
  const steps = [
    busyboxStep(busyboxInput, lazyFetch(busyboxInput, options)),
    verifierStep(),
    initramfsStep(recipe.initPath, epoch, rawMldsaPublicKey(signing.systemStage), signing.systemStage.id),
    systemImageStep(recipe, epoch, false),
    androidImagesStep({ profile, kernelFile: path.resolve(options.kernelImage), cmdline, rollbackIndex, signing }),
  ];
  const results = await runGraph(steps, { cacheDir: options.cacheDir, ...(options.noCache ? { noCache: true } : {}), ...options.events });
  const imagesDir = results.find((result) => result.id === 'android-images')!.outputDir;

  const sparseFiles = (await readdir(path.join(imagesDir, SPARSE_DIR))).map((name) => path.join(SPARSE_DIR, name));
  const files: PublishedFile[] = [...PARTITION_IMAGES, ...MANIFESTS, AVB_CUSTOM_KEY_FILE, ...sparseFiles].map((name) => ({ step: 'android-images', from: name, to: name }));
  const record = await publishBuild(
    options.outDir,
    results,
    files,
    await publicKeyFiles(signing),
    {
      formatVersion: 1,
      device: profile.id,
      recipe: path.relative(process.cwd(), recipe.file) || recipe.file,
      sourceDateEpoch: epoch,
      rollbackIndex,
      devKeys: signing.root.dev,
      kernel: { prebuilt: path.basename(options.kernelImage) },
      partitions: Object.fromEntries(Object.entries(profile.android!.partitions).filter(([, spec]) => spec.image).map(([name, spec]) => [name, spec.image])),
      chain: chainRecord(profile),
    },
  );
  return { outDir: options.outDir, record, results };
}

