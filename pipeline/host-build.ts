/**
 * The host image build: resolves the device profile, recipe and pinned
 * inputs, runs the step graph, and publishes the output folder with the
 * boot configuration that `boot-test` reads.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { BootConfig } from '../deploy/boot-config.js';
import { BOOT_CONFIG_FILE } from '../deploy/boot-config.js';
import { QwamosError } from '../core/errors.js';
import { formatDmModCreate } from '../images/verity-dm.js';
import type { VerityImage } from '../images/verity-image.js';
import { runGraph } from './graph.js';
import { findLockedInput, loadLockfile, type LockedInput } from './lockfile.js';
import { loadProfile, type DeviceProfile } from './profiles.js';
import { publishBuild, type BuildRecord } from './publish.js';
import { loadRecipe, sourceDateEpoch, type LoadedRecipe } from './recipes.js';
import type { Step, StepResult } from './step.js';
import { busyboxStep } from './steps/busybox.js';
import { EMBEDDED_SYSTEM_KEY_PATH, INITRAMFS_FILE, initramfsStep } from './steps/initramfs.js';
import { KERNEL_CONFIG_FILE, KERNEL_RELEASE_FILE, kernelStep } from './steps/kernel.js';
import { kernelSourceStep } from './steps/kernel-source.js';
import { buildPhoneImages } from './phone-build.js';
import { verifierStep } from './steps/verifier.js';
import { CMDLINE_FILE, ROLLBACK_LOCATION, SYSTEM_MANIFEST_PARTITION_FILE, VBMETA_FILE, bootChainStep } from './steps/boot-chain.js';
import { AVB_PUBLIC_KEY_FILE, publicKeyFiles, rawMldsaPublicKey, type SigningSetup } from './signing-setup.js';
import { lazyFetch, signingFor, type BuildOptions } from './build-options.js';

export type { BuildOptions };
import { recordSigning } from '../signing/ledger.js';
import { SYSTEM_IMAGE_FILE, VERITY_FILE, systemImageStep, type VerityRecord } from './steps/system-image.js';


export interface HostBuildResult {
  outDir: string;
  record: BuildRecord;
  results: StepResult[];
}


function requireQemu(profile: DeviceProfile): NonNullable<DeviceProfile['qemu']> {
  if (!profile.qemu) {
    throw new QwamosError('INPUT_INVALID', `device '${profile.id}' has no qemu section, so the host image cannot be boot-tested; add one to device-profiles/${profile.id}.yaml`);
  }
  return profile.qemu;
}

interface HostStepInputs {
  profile: DeviceProfile;
  recipe: LoadedRecipe;
  epoch: number;
  kernelInput: LockedInput;
  busyboxInput: LockedInput;
  signing: SigningSetup;
  rollbackIndex: number;
}

export { AVB_PUBLIC_KEY_FILE };


/** Describes the signed chain for build.json: which manifest covers which image, and which key signs it. */
function chainRecord(profile: DeviceProfile): Record<string, unknown> {
  return {
    formatVersion: 1,
    deviceProfile: profile.id,
    vbmeta: { image: VBMETA_FILE, publicKey: AVB_PUBLIC_KEY_FILE, partitions: { kernel: profile.kernel.imageTarget, initramfs: INITRAMFS_FILE } },
    stages: [
      { stage: 'kernel', manifest: 'kernel.manifest', image: profile.kernel.imageTarget, signer: 'root' },
      { stage: 'initramfs', manifest: 'initramfs.manifest', image: INITRAMFS_FILE, signer: 'root', embeddedPublicKey: EMBEDDED_SYSTEM_KEY_PATH },
      { stage: 'system', manifest: 'system.manifest', manifestPartition: SYSTEM_MANIFEST_PARTITION_FILE, image: SYSTEM_IMAGE_FILE, signer: 'system-stage', verity: true },
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

export function hostSteps(inputs: HostStepInputs, options: BuildOptions): Step[] {
  const { profile, recipe, epoch, signing } = inputs;
  return [
    kernelSourceStep(inputs.kernelInput, lazyFetch(inputs.kernelInput, options)),
    kernelStep(profile, epoch),
    busyboxStep(inputs.busyboxInput, lazyFetch(inputs.busyboxInput, options)),
    verifierStep(),
    initramfsStep(recipe.initPath, epoch, rawMldsaPublicKey(signing.systemStage), signing.systemStage.id),
    systemImageStep(recipe, epoch),
    bootChainStep({
      deviceProfile: profile.id,
      kernelFile: profile.kernel.imageTarget,
      rollbackIndex: inputs.rollbackIndex,
      ...(options.signerCommand ? { signerCommand: options.signerCommand } : {}),
      cmdline: (verity) => kernelCmdline(profile, recipe, verity),
      signing,
    }),
  ];
}

/** Refuses a rollback index below the last one signed with these keys (the ledger beside them). */
async function recordRollbackIndexes(profile: DeviceProfile, signing: SigningSetup, rollbackIndex: number, allowRollback: boolean): Promise<void> {
  const signings = [
    { location: ROLLBACK_LOCATION.boot, key: signing.root },
    { location: ROLLBACK_LOCATION.system, key: signing.systemStage },
  ];
  for (const { location, key } of signings) {
    await recordSigning(signing.store.dir, { product: 'qwamos', device: profile.id, location, rollbackIndex, key, allowRollback });
  }
}

/** Builds the kernel command line: console, dm-verity table for the system disk, recipe extras. */
export function kernelCmdline(profile: DeviceProfile, recipe: LoadedRecipe, verity: VerityRecord): string {
  const qemu = requireQemu(profile);
  const image: VerityImage = {
    rootDigest: Buffer.from(verity.rootDigest, 'hex'),
    salt: Buffer.from(verity.salt, 'hex'),
    hashAlgorithm: verity.hashAlgorithm as VerityImage['hashAlgorithm'],
    dataBlockSize: verity.dataBlockSize,
    hashBlockSize: verity.hashBlockSize,
    dataBlocks: verity.dataBlocks,
    hashOffset: verity.hashOffset,
    treeSize: verity.treeSize,
  };
  const dataDevice = qemu.disk.guestPath;
  return [
    `console=${qemu.console}`,
    formatDmModCreate(image, { name: 'system', dataDevice }),
    // dm-init creates the device before init runs; waitfor makes it wait
    // until the disk driver has probed the data device.
    `dm-mod.waitfor=${dataDevice}`,
    // The initramfs checks the signed system manifest against this device profile.
    `qwamos.device=${profile.id}`,
    ...(recipe.kernelCmdline ?? []),
  ].join(' ');
}

export async function buildHostImage(options: BuildOptions & { kernelImage?: string }): Promise<HostBuildResult> {
  const profile = await loadProfile(options.device);
  if (profile.android) return buildPhoneImages(profile, options);
  if (options.kernelImage) {
    throw new QwamosError('USAGE', `--kernel applies to phone profiles; device '${profile.id}' builds its kernel from ${profile.kernel.source.input ?? 'its pinned source'}`);
  }
  const qemu = requireQemu(profile);
  const recipe = await loadRecipe(options.recipeFile);
  const epoch = sourceDateEpoch(recipe);
  const lockfile = await loadLockfile(options.lockfilePath);
  if (!profile.kernel.source.input) {
    throw new QwamosError('INPUT_INVALID', `device '${profile.id}' pins no kernel source (kernel.source.input is missing in device-profiles/${profile.id}.yaml); give a prebuilt kernel with --kernel IMAGE`);
  }
  const kernelInput = findLockedInput(lockfile, profile.kernel.source.input, options.lockfilePath);
  const busyboxInput = findLockedInput(lockfile, recipe.initramfs.busyboxInput, options.lockfilePath);

  const signing = await signingFor(options);
  const rollbackIndex = options.rollbackIndex ?? 0;
  await recordRollbackIndexes(profile, signing, rollbackIndex, options.allowRollback ?? false);

  const steps = hostSteps({ profile, recipe, epoch, kernelInput, busyboxInput, signing, rollbackIndex }, options);
  const results = await runGraph(steps, { cacheDir: options.cacheDir, ...(options.noCache ? { noCache: true } : {}), ...options.events });
  const outputOf = (id: string): string => results.find((result) => result.id === id)!.outputDir;

  const cmdline = (await readFile(path.join(outputOf('boot-chain'), CMDLINE_FILE), 'utf8')).trim();
  const kernelRelease = (await readFile(path.join(outputOf('kernel'), KERNEL_RELEASE_FILE), 'utf8')).trim();
  const bootConfig: BootConfig = {
    formatVersion: 1,
    device: profile.id,
    arch: profile.arch,
    kernel: profile.kernel.imageTarget,
    initramfs: INITRAMFS_FILE,
    cmdline,
    disks: [
      { file: SYSTEM_IMAGE_FILE, device: qemu.disk.device, readOnly: true },
      { file: SYSTEM_MANIFEST_PARTITION_FILE, device: qemu.disk.device, readOnly: true },
    ],
    counterStoreDevice: qemu.disk.device,
    vbmeta: { image: VBMETA_FILE, partitions: { kernel: profile.kernel.imageTarget, initramfs: INITRAMFS_FILE }, publicKey: AVB_PUBLIC_KEY_FILE, rollbackIndexLocation: ROLLBACK_LOCATION.boot },
    qemu: { binary: qemu.binary, machine: qemu.machine, cpu: qemu.cpu, memoryMiB: qemu.memoryMiB },
  };

  const record = await publishBuild(
    options.outDir,
    results,
    [
      { step: 'kernel', from: profile.kernel.imageTarget, to: profile.kernel.imageTarget },
      { step: 'kernel', from: KERNEL_CONFIG_FILE, to: KERNEL_CONFIG_FILE },
      { step: 'initramfs', from: INITRAMFS_FILE, to: INITRAMFS_FILE },
      { step: 'system-image', from: SYSTEM_IMAGE_FILE, to: SYSTEM_IMAGE_FILE },
      { step: 'system-image', from: VERITY_FILE, to: VERITY_FILE },
      ...['kernel.manifest', 'initramfs.manifest', 'system.manifest', SYSTEM_MANIFEST_PARTITION_FILE, VBMETA_FILE].map((file) => ({ step: 'boot-chain', from: file, to: file })),
    ],
    { [BOOT_CONFIG_FILE]: bootConfig, ...(await publicKeyFiles(signing)) },
    {
      formatVersion: 1,
      device: profile.id,
      recipe: path.relative(process.cwd(), recipe.file) || recipe.file,
      sourceDateEpoch: epoch,
      kernelRelease,
      inputs: [kernelInput, busyboxInput].map((input) => ({ name: input.name, version: input.version, sha256: input.sha256 })),
      rollbackIndex,
      devKeys: signing.root.dev,
      chain: chainRecord(profile),
    },
  );

  return { outDir: options.outDir, record, results };
}
