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
import { fetchInput } from './fetch-apt.js';
import { runGraph, type GraphOptions } from './graph.js';
import { findLockedInput, loadLockfile, type LockedInput } from './lockfile.js';
import { loadProfile, type DeviceProfile } from './profiles.js';
import { publishBuild, type BuildRecord } from './publish.js';
import { loadRecipe, sourceDateEpoch, type LoadedRecipe } from './recipes.js';
import type { Step, StepResult } from './step.js';
import { busyboxStep } from './steps/busybox.js';
import { INITRAMFS_FILE, initramfsStep } from './steps/initramfs.js';
import { KERNEL_CONFIG_FILE, KERNEL_RELEASE_FILE, kernelStep } from './steps/kernel.js';
import { kernelSourceStep } from './steps/kernel-source.js';
import { SYSTEM_IMAGE_FILE, VERITY_FILE, systemImageStep, type VerityRecord } from './steps/system-image.js';

export interface HostBuildOptions {
  device: string;
  recipeFile: string;
  outDir: string;
  cacheDir: string;
  lockfilePath: string;
  offline: boolean;
  noCache?: boolean;
  events?: Pick<GraphOptions, 'onStepStart' | 'onProgress' | 'onStepDone'>;
  /** Receives one line for each input download. */
  onFetch?(message: string): void;
}

export interface HostBuildResult {
  outDir: string;
  record: BuildRecord;
  results: StepResult[];
}

/** Returns a memoized function that fetches and verifies one pinned input. */
function lazyFetch(input: LockedInput, options: HostBuildOptions): () => Promise<string> {
  let fetched: Promise<string> | undefined;
  return () => {
    fetched ??= fetchInput(input, { cacheDir: options.cacheDir, offline: options.offline, ...(options.onFetch ? { onProgress: options.onFetch } : {}) });
    return fetched;
  };
}

function requireQemu(profile: DeviceProfile): NonNullable<DeviceProfile['qemu']> {
  if (!profile.qemu) {
    throw new QwamosError('INPUT_INVALID', `device '${profile.id}' has no qemu section, so the host image cannot be boot-tested; add one to device-profiles/${profile.id}.yaml`);
  }
  return profile.qemu;
}

export function hostSteps(profile: DeviceProfile, recipe: LoadedRecipe, epoch: number, kernelInput: LockedInput, busyboxInput: LockedInput, options: HostBuildOptions): Step[] {
  return [
    kernelSourceStep(kernelInput, lazyFetch(kernelInput, options)),
    kernelStep(profile, epoch),
    busyboxStep(busyboxInput, lazyFetch(busyboxInput, options)),
    initramfsStep(recipe.initPath, epoch),
    systemImageStep(recipe, epoch),
  ];
}

/** The kernel command line: console, dm-verity table for the system disk, recipe extras. */
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
    ...(recipe.kernelCmdline ?? []),
  ].join(' ');
}

export async function buildHostImage(options: HostBuildOptions): Promise<HostBuildResult> {
  const profile = await loadProfile(options.device);
  const qemu = requireQemu(profile);
  const recipe = await loadRecipe(options.recipeFile);
  const epoch = sourceDateEpoch(recipe);
  const lockfile = await loadLockfile(options.lockfilePath);
  if (!profile.kernel.source.input) {
    throw new QwamosError('INPUT_INVALID', `device '${profile.id}' pins no kernel source (kernel.source.input is missing in device-profiles/${profile.id}.yaml); give a prebuilt kernel with --kernel IMAGE`);
  }
  const kernelInput = findLockedInput(lockfile, profile.kernel.source.input, options.lockfilePath);
  const busyboxInput = findLockedInput(lockfile, recipe.initramfs.busyboxInput, options.lockfilePath);

  const steps = hostSteps(profile, recipe, epoch, kernelInput, busyboxInput, options);
  const results = await runGraph(steps, { cacheDir: options.cacheDir, ...(options.noCache ? { noCache: true } : {}), ...options.events });
  const outputOf = (id: string): string => results.find((result) => result.id === id)!.outputDir;

  const verity = JSON.parse(await readFile(path.join(outputOf('system-image'), VERITY_FILE), 'utf8')) as VerityRecord;
  const kernelRelease = (await readFile(path.join(outputOf('kernel'), KERNEL_RELEASE_FILE), 'utf8')).trim();
  const bootConfig: BootConfig = {
    formatVersion: 1,
    device: profile.id,
    arch: profile.arch,
    kernel: profile.kernel.imageTarget,
    initramfs: INITRAMFS_FILE,
    cmdline: kernelCmdline(profile, recipe, verity),
    disks: [{ file: SYSTEM_IMAGE_FILE, device: qemu.disk.device, readOnly: true }],
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
    ],
    { [BOOT_CONFIG_FILE]: bootConfig },
    {
      formatVersion: 1,
      device: profile.id,
      recipe: path.relative(process.cwd(), recipe.file) || recipe.file,
      sourceDateEpoch: epoch,
      kernelRelease,
      inputs: [kernelInput, busyboxInput].map((input) => ({ name: input.name, version: input.version, sha256: input.sha256 })),
    },
  );

  return { outDir: options.outDir, record, results };
}
