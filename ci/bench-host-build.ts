/**
 * Benchmark group host-build: a cold build of the qemu-virt-arm64 host image
 * through the CLI, its kernel step against plain `make` on the same source
 * and .config, and the no-op rebuild.
 */
import { createHash } from 'node:crypto';
import { copyFile, link, mkdir, readFile, readdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { REPO_ROOT } from '../core/schema.js';
import { buildEnvironment, configureKernel, defaultRulesPath } from '../kernel/index.js';
import { resolveCacheDir } from '../pipeline/download-cache.js';
import { loadProfile, type DeviceProfile } from '../pipeline/profiles.js';
import type { BuildRecord } from '../pipeline/publish.js';
import { kernelFragmentPaths } from '../pipeline/steps/kernel.js';
import { KERNEL_SOURCE_DIR } from '../pipeline/steps/kernel-source.js';
import {
  type BenchContext, type GroupResult, elapsedMs, formatMs, formatPercent, measureInProcess, progress, runTimedTool, temporaryFolder,
} from './bench-measure.js';

const DEVICE = 'qemu-virt-arm64';
const CLI = path.join(REPO_ROOT, 'bin', 'qwamos-build.js');

interface CliBuild {
  wallMs: number;
  record: BuildRecord & { sourceDateEpoch: number };
  downloads: number;
}

/**
 * Links (or copies, across file systems) the verified downloads of the
 * user's cache into `cacheDir`, so the cold build skips downloading the
 * pinned packages. Returns the number of files seeded.
 */
async function seedDownloads(cacheDir: string): Promise<{ from: string; files: number }> {
  const from = path.join(resolveCacheDir(), 'downloads', 'sha256');
  const to = path.join(cacheDir, 'downloads', 'sha256');
  await mkdir(to, { recursive: true });

  const names = await readdir(from).catch(() => [] as string[]);
  for (const name of names) {
    await link(path.join(from, name), path.join(to, name)).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EXDEV' && error.code !== 'EPERM') throw error;
      await copyFile(path.join(from, name), path.join(to, name));
    });
  }
  return { from, files: names.length };
}

/** Runs `qwamos-build build` in a child process, forwarding its step lines as progress. */
async function runCliBuild(cacheDir: string, outDir: string, workDir: string): Promise<CliBuild> {
  let downloads = 0;
  const args = [CLI, 'build', '--device', DEVICE, '--cache-dir', cacheDir, '--out', outDir];
  const started = process.hrtime.bigint();
  await runTimedTool(process.execPath, args, {
    workDir,
    cwd: REPO_ROOT,
    onLine: (line) => {
      if (/^\[fetch\].*downloading/.test(line)) downloads++;
      if (/^\[/.test(line)) progress(`  ${line}`);
    },
  });
  const wallMs = elapsedMs(started);

  const record = JSON.parse(await readFile(path.join(outDir, 'build.json'), 'utf8')) as CliBuild['record'];
  return { wallMs, record, downloads };
}

async function sha256Of(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

interface PlainMake {
  olddefconfigMs: number;
  imageMs: number;
  cpuMs?: number;
  imageIdentical: boolean;
}

/**
 * Builds the kernel with plain make from the build's final .config: the
 * reference for the kernel step, with the same jobs and KBUILD_BUILD_*
 * environment that kernel/compile.ts sets.
 */
async function runPlainMake(profile: DeviceProfile, sourceDir: string, outDir: string, workDir: string, epoch: number): Promise<PlainMake> {
  const buildDir = path.join(workDir, 'plain-make');
  await mkdir(buildDir, { recursive: true });
  await copyFile(path.join(outDir, 'kernel.config'), path.join(buildDir, '.config'));

  const common = [
    `O=${buildDir}`, // out-of-tree build, as the kernel step does
    `ARCH=${profile.arch}`,
    `CROSS_COMPILE=${profile.kernel.crossCompile}`,
  ];
  // Fixed banner time, user, host and build number, so both builds compile the same version string.
  const options = { workDir, cwd: sourceDir, env: buildEnvironment({ sourceDateEpoch: epoch }), logFile: path.join(workDir, 'plain-make.log') };

  progress('plain make: olddefconfig');
  const olddefconfig = await runTimedTool('make', [...common, 'olddefconfig'], options);
  progress(`plain make: -j${availableParallelism()} ${profile.kernel.imageTarget} (several minutes)`);
  const image = await runTimedTool('make', [...common, `-j${availableParallelism()}`, profile.kernel.imageTarget], options);

  const builtImage = path.join(buildDir, 'arch', profile.arch, 'boot', profile.kernel.imageTarget);
  const imageIdentical = (await sha256Of(builtImage)) === (await sha256Of(path.join(outDir, profile.kernel.imageTarget)));
  const cpuMs = olddefconfig.cpuMs !== undefined && image.cpuMs !== undefined ? olddefconfig.cpuMs + image.cpuMs : undefined;
  return { olddefconfigMs: olddefconfig.wallMs, imageMs: image.wallMs, ...(cpuMs === undefined ? {} : { cpuMs }), imageIdentical };
}

/** Times the configure half of the kernel step alone: tinyconfig, fragment merge, olddefconfig and the checks. */
async function timeConfigure(profile: DeviceProfile, sourceDir: string, workDir: string): Promise<number> {
  progress('kernel step configure phase alone: tinyconfig, fragments, olddefconfig, checks');
  const timing = await measureInProcess(() => configureKernel({
    sourceDir,
    buildDir: path.join(workDir, 'configure-only'),
    arch: profile.arch,
    crossCompile: profile.kernel.crossCompile,
    logFile: path.join(workDir, 'configure-only.log'),
    baseConfig: profile.kernel.baseConfig,
    fragments: kernelFragmentPaths(profile),
    rules: defaultRulesPath(),
  }));
  return timing.wallMs;
}

function stepDuration(record: BuildRecord, id: string): number {
  const step = record.steps.find((candidate) => candidate.id === id);
  if (!step) throw new QwamosError('INPUT_INVALID', `build.json has no step '${id}'; the host build graph changed, so update ci/bench-host-build.ts`);
  return step.durationMs;
}

export async function benchHostBuild(context: BenchContext): Promise<GroupResult> {
  const workDir = await temporaryFolder(context, 'host-build');
  const cacheDir = path.join(workDir, 'cache');
  const outDir = path.join(workDir, 'out');
  const profile = await loadProfile(DEVICE);

  const seeded = await seedDownloads(cacheDir);
  progress(`host-build: seeded ${seeded.files} pinned downloads from ${seeded.from} into the fresh cache ${cacheDir}, so the cold build does not download them`);

  progress('host-build: cold build (about 6 minutes on 2 cores)');
  const cold = await runCliBuild(cacheDir, outDir, workDir);
  context.buildOutputDir = outDir;

  const sourceKey = cold.record.steps.find((step) => step.id === 'kernel-source')!.key;
  const sourceDir = path.join(cacheDir, 'steps', 'kernel-source', sourceKey, 'outputs', KERNEL_SOURCE_DIR);
  const plain = await runPlainMake(profile, sourceDir, outDir, workDir, cold.record.sourceDateEpoch);
  const configureMs = await timeConfigure(profile, sourceDir, workDir);

  progress('host-build: no-op rebuild');
  const noop = await runCliBuild(cacheDir, outDir, workDir);
  const cachedSteps = noop.record.steps.filter((step) => step.status === 'cached').length;

  const kernelStepMs = stepDuration(cold.record, 'kernel');
  const plainMs = plain.olddefconfigMs + plain.imageMs;
  const overhead = (kernelStepMs - plainMs) / plainMs;
  const stepSum = cold.record.steps.reduce((sum, step) => sum + step.durationMs, 0);

  return {
    id: 'host-build',
    title: `Host build (${DEVICE})`,
    notes: [
      `Fresh cache in os.tmpdir(); the ${seeded.files} pinned downloads were hard-linked from ${seeded.from}, so the cold build downloads nothing that the user's cache holds (files downloaded during the cold build: ${cold.downloads}). The cold build also creates new dev keys in the fresh cache.`,
      'Builds run `node bin/qwamos-build.js build --device qemu-virt-arm64 --cache-dir TMP/cache --out TMP/out` in a child process; step durations are those in TMP/out/build.json.',
    ],
    tables: [
      {
        title: 'Cold build, per step',
        header: ['step', 'status', 'duration'],
        rows: [
          ...cold.record.steps.map((step) => [step.id, step.status, formatMs(step.durationMs)]),
          ['sum of steps', '', formatMs(stepSum)],
          ['CLI wall time', '', formatMs(cold.wallMs)],
        ],
        notes: ['The CLI wall time adds Node.js start-up, key set-up and publishing the output folder to the sum of steps.'],
      },
      {
        title: 'Kernel step against plain make (same source, same final .config)',
        header: ['measure', 'time'],
        rows: [
          ['kernel step (pipeline)', formatMs(kernelStepMs)],
          ['plain make olddefconfig', formatMs(plain.olddefconfigMs)],
          [`plain make -j${availableParallelism()} ${profile.kernel.imageTarget}`, formatMs(plain.imageMs)],
          ['plain make total', formatMs(plainMs)],
          ['pipeline overhead (goal under +5 %)', formatPercent(overhead)],
          ['configure phase alone (in-process)', formatMs(configureMs)],
        ],
        notes: [
          'The kernel step also runs tinyconfig, merges the config fragments, runs olddefconfig, indexes Kconfig to check every requested option and the requirement rules, then runs `make kernelrelease`, copies the Image and .config and digests its outputs. The configure-phase row times that first part alone in a separate build folder.',
          `The plain build ran second, with the source tree already in the page cache. Its ${profile.kernel.imageTarget} is ${plain.imageIdentical ? 'byte-identical to' : 'different from'} the pipeline's.`,
        ],
      },
      {
        title: 'No-op rebuild (same cache and output folder)',
        header: ['measure', 'value'],
        rows: [
          ['CLI wall time', formatMs(noop.wallMs)],
          ['steps cached', `${cachedSteps} of ${noop.record.steps.length}`],
        ],
        notes: cachedSteps === noop.record.steps.length ? [] : [`Steps that ran again: ${noop.record.steps.filter((step) => step.status !== 'cached').map((step) => step.id).join(', ')}.`],
      },
    ],
    data: {
      seededDownloads: seeded.files,
      downloadsDuringColdBuild: cold.downloads,
      cold: { wallMs: cold.wallMs, steps: cold.record.steps },
      kernel: { stepMs: kernelStepMs, plainMakeOlddefconfigMs: plain.olddefconfigMs, plainMakeImageMs: plain.imageMs, plainMakeCpuMs: plain.cpuMs, overhead, configurePhaseMs: configureMs, imageIdentical: plain.imageIdentical },
      noop: { wallMs: noop.wallMs, steps: noop.record.steps, allCached: cachedSteps === noop.record.steps.length },
    },
  };
}
