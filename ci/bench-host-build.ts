/**
 * Benchmark group host-build: a cold build of the qemu-virt-arm64 host image
 * per step, its kernel step against plain `make` on the same source and
 * .config, and the no-op rebuild through the CLI.
 */
import { createHash } from 'node:crypto';
import { copyFile, link, mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { runTool, type RunOptions } from '../core/exec.js';
import { REPO_ROOT } from '../core/schema.js';
import { buildEnvironment, configureKernel, defaultRulesPath } from '../kernel/index.js';
import { resolveCacheDir } from '../pipeline/download-cache.js';
import { buildHostImage } from '../pipeline/host-build.js';
import { LOCKFILE_NAME } from '../pipeline/lockfile.js';
import { loadProfile, type DeviceProfile } from '../pipeline/profiles.js';
import type { BuildRecord } from '../pipeline/publish.js';
import { kernelFragmentPaths, kernelStep } from '../pipeline/steps/kernel.js';
import { KERNEL_SOURCE_DIR } from '../pipeline/steps/kernel-source.js';
import {
  type BenchContext, type GroupResult, elapsedMs, formatMs, formatPercent, median, processTreeCpuMs, progress, runTimedTool, temporaryFolder,
} from './bench-measure.js';

const DEVICE = 'qemu-virt-arm64';
const CLI = path.join(REPO_ROOT, 'bin', 'qwamos-build.js');

/** Step records as build.json stores them. */
type StepRecords = BuildRecord['steps'];

interface ColdBuild {
  wallMs: number;
  steps: StepRecords;
  /** CPU time of each step that ran, with its child processes (processTreeCpuMs). */
  stepCpuMs: Record<string, number>;
  sourceDateEpoch: number;
  downloads: number;
}

interface CliBuild {
  wallMs: number;
  steps: StepRecords;
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

/**
 * Runs the cold build in this process with the options `qwamos-build build`
 * passes, so that each step's CPU time, including its make and compiler
 * processes, can be read around it.
 */
async function runColdBuild(cacheDir: string, outDir: string): Promise<ColdBuild> {
  const stepCpuMs: Record<string, number> = {};
  let stepStartCpuMs = 0;
  let downloads = 0;

  const started = process.hrtime.bigint();
  const result = await buildHostImage({
    device: DEVICE,
    recipeFile: path.join(REPO_ROOT, 'recipes', 'host.yaml'),
    outDir,
    cacheDir,
    lockfilePath: path.join(REPO_ROOT, LOCKFILE_NAME),
    offline: false,
    events: {
      onStepStart: (step) => {
        stepStartCpuMs = processTreeCpuMs();
        progress(`  [${step.id}] running`);
      },
      onStepDone: (step) => {
        if (step.status === 'run') stepCpuMs[step.id] = processTreeCpuMs() - stepStartCpuMs;
        progress(`  [${step.id}] ${step.status === 'run' ? 'done' : 'cached'} in ${formatMs(step.durationMs)}`);
      },
    },
    onFetch: (message) => {
      if (/downloading/.test(message)) downloads++;
      progress(`  [fetch] ${message}`);
    },
  });
  const wallMs = elapsedMs(started);

  return { wallMs, steps: result.record.steps, stepCpuMs, sourceDateEpoch: result.record.sourceDateEpoch, downloads };
}

/** Runs `qwamos-build build` in a child process, as a user would, forwarding its step lines as progress. */
async function runCliBuild(cacheDir: string, outDir: string, workDir: string): Promise<CliBuild> {
  const args = [CLI, 'build', '--device', DEVICE, '--cache-dir', cacheDir, '--out', outDir];
  const started = process.hrtime.bigint();
  await runTimedTool(process.execPath, args, {
    workDir,
    cwd: REPO_ROOT,
    onLine: (line) => {
      if (/^\[/.test(line)) progress(`  ${line}`);
    },
  });
  const wallMs = elapsedMs(started);

  const record = JSON.parse(await readFile(path.join(outDir, 'build.json'), 'utf8')) as BuildRecord;
  return { wallMs, steps: record.steps };
}

/** Wall and CPU time (with child processes) of one tool run. */
interface Measured {
  wallMs: number;
  cpuMs: number;
}

async function measureTool(command: string, args: string[], options: RunOptions): Promise<Measured> {
  const cpuBefore = processTreeCpuMs();
  const started = process.hrtime.bigint();
  await runTool(command, args, options);
  return { wallMs: elapsedMs(started), cpuMs: processTreeCpuMs() - cpuBefore };
}

async function sha256Of(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

interface PlainMake {
  olddefconfig: Measured;
  image: Measured;
  /** `make -s kernelrelease`, which the kernel step runs in addition and the plain total leaves out. */
  kernelRelease: Measured;
  imageIdentical: boolean;
}

/**
 * Builds the kernel with plain make from the build's final .config: the
 * reference for the kernel step, with the same jobs and KBUILD_BUILD_*
 * environment that kernel/compile.ts sets.
 */
async function runPlainMake(profile: DeviceProfile, sourceDir: string, outDir: string, workDir: string, epoch: number, pair: number): Promise<PlainMake> {
  const buildDir = path.join(workDir, `plain-make-${pair}`);
  await mkdir(buildDir, { recursive: true });
  await copyFile(path.join(outDir, 'kernel.config'), path.join(buildDir, '.config'));

  const common = [
    `O=${buildDir}`, // out-of-tree build, as the kernel step does
    `ARCH=${profile.arch}`,
    `CROSS_COMPILE=${profile.kernel.crossCompile}`,
  ];
  // Fixed banner time, user, host and build number, so both builds compile the same version string.
  const options = { cwd: sourceDir, env: buildEnvironment({ sourceDateEpoch: epoch }), logFile: path.join(workDir, `plain-make-${pair}.log`) };

  progress('plain make: olddefconfig');
  const olddefconfig = await measureTool('make', [...common, 'olddefconfig'], options);
  progress(`plain make: -j${availableParallelism()} ${profile.kernel.imageTarget} (several minutes)`);
  const image = await measureTool('make', [...common, `-j${availableParallelism()}`, profile.kernel.imageTarget], options);
  // -s: print only the release; the kernel step runs the same query after its compile.
  const kernelRelease = await measureTool('make', ['-s', ...common, 'kernelrelease'], { cwd: sourceDir });

  const builtImage = path.join(buildDir, 'arch', profile.arch, 'boot', profile.kernel.imageTarget);
  const imageIdentical = (await sha256Of(builtImage)) === (await sha256Of(path.join(outDir, profile.kernel.imageTarget)));
  await rm(buildDir, { recursive: true });
  return { olddefconfig, image, kernelRelease, imageIdentical };
}

/**
 * Runs the kernel step's own code again (pipeline/steps/kernel.ts) in a
 * fresh output folder, for the second and later pairs. Unlike a step run by
 * the graph, it computes no cache key and digests no outputs.
 */
async function runKernelStepAgain(profile: DeviceProfile, sourceOutputsDir: string, workDir: string, epoch: number, pair: number): Promise<Measured> {
  const outputDir = path.join(workDir, `kernel-step-${pair}`);
  await mkdir(outputDir);

  const cpuBefore = processTreeCpuMs();
  const started = process.hrtime.bigint();
  await kernelStep(profile, epoch).run({
    outputDir,
    dependencies: { 'kernel-source': sourceOutputsDir },
    logFile: path.join(workDir, `kernel-step-${pair}.log`),
    progress: () => undefined,
  });
  const measured = { wallMs: elapsedMs(started), cpuMs: processTreeCpuMs() - cpuBefore };

  await rm(outputDir, { recursive: true });
  return measured;
}

/** Times the configure half of the kernel step alone: tinyconfig, fragment merge, olddefconfig and the checks. */
async function timeConfigure(profile: DeviceProfile, sourceDir: string, workDir: string): Promise<Measured> {
  progress('kernel step configure phase alone: tinyconfig, fragments, olddefconfig, checks');
  const cpuBefore = processTreeCpuMs();
  const started = process.hrtime.bigint();
  await configureKernel({
    sourceDir,
    buildDir: path.join(workDir, 'configure-only'),
    arch: profile.arch,
    crossCompile: profile.kernel.crossCompile,
    logFile: path.join(workDir, 'configure-only.log'),
    baseConfig: profile.kernel.baseConfig,
    fragments: kernelFragmentPaths(profile),
    rules: defaultRulesPath(),
  });
  return { wallMs: elapsedMs(started), cpuMs: processTreeCpuMs() - cpuBefore };
}

function stepDuration(steps: StepRecords, id: string): number {
  const step = steps.find((candidate) => candidate.id === id);
  if (!step) throw new QwamosError('INPUT_INVALID', `the host build has no step '${id}'; its step graph changed, so update ci/bench-host-build.ts`);
  return step.durationMs;
}

/** Returns the overhead of the kernel step over plain make, as fractions of plain make's times. */
function overheadOf(step: Measured, plain: Measured): { wall: number; cpu: number } {
  return { wall: step.wallMs / plain.wallMs - 1, cpu: step.cpuMs / plain.cpuMs - 1 };
}

function medianMeasured(values: Measured[]): Measured {
  return { wallMs: median(values.map((value) => value.wallMs)), cpuMs: median(values.map((value) => value.cpuMs)) };
}

export async function benchHostBuild(context: BenchContext): Promise<GroupResult> {
  const workDir = await temporaryFolder(context, 'host-build');
  const cacheDir = path.join(workDir, 'cache');
  const outDir = path.join(workDir, 'out');
  const profile = await loadProfile(DEVICE);

  const seeded = await seedDownloads(cacheDir);
  progress(`host-build: seeded ${seeded.files} pinned downloads from ${seeded.from} into the fresh cache ${cacheDir}, so the cold build does not download them`);

  progress('host-build: cold build (3 to 6 minutes on 2 cores)');
  const cold = await runColdBuild(cacheDir, outDir);
  context.buildOutputDir = outDir;

  const sourceKey = cold.steps.find((step) => step.id === 'kernel-source')!.key;
  const sourceOutputsDir = path.join(cacheDir, 'steps', 'kernel-source', sourceKey, 'outputs');
  const sourceDir = path.join(sourceOutputsDir, KERNEL_SOURCE_DIR);

  // Pairs alternate pipeline and plain make, so that a change in load or a warm-up effect
  // shows as a difference between pairs. The first pipeline run is the cold build's.
  const kernelSteps: Measured[] = [{ wallMs: stepDuration(cold.steps, 'kernel'), cpuMs: cold.stepCpuMs.kernel ?? Number.NaN }];
  const plains: PlainMake[] = [];
  for (let pair = 1; pair <= context.kernelRuns; pair++) {
    if (pair > 1) {
      progress(`host-build: kernel step again, pair ${pair} of ${context.kernelRuns} (several minutes)`);
      kernelSteps.push(await runKernelStepAgain(profile, sourceOutputsDir, workDir, cold.sourceDateEpoch, pair));
    }
    plains.push(await runPlainMake(profile, sourceDir, outDir, workDir, cold.sourceDateEpoch, pair));
  }
  const configure = await timeConfigure(profile, sourceDir, workDir);

  progress('host-build: no-op rebuild');
  const noop = await runCliBuild(cacheDir, outDir, workDir);
  const cachedSteps = noop.steps.filter((step) => step.status === 'cached').length;

  const plainTotals: Measured[] = plains.map((plain) => ({ wallMs: plain.olddefconfig.wallMs + plain.image.wallMs, cpuMs: plain.olddefconfig.cpuMs + plain.image.cpuMs }));
  const pairOverheads = kernelSteps.map((step, index) => overheadOf(step, plainTotals[index]!));
  const kernelStepMedian = medianMeasured(kernelSteps);
  const plainTotalMedian = medianMeasured(plainTotals);
  const overhead = overheadOf(kernelStepMedian, plainTotalMedian);
  const stepSum = cold.steps.reduce((sum, step) => sum + step.durationMs, 0);
  const row = (label: string, measured: Measured): string[] => [label, formatMs(measured.wallMs), formatMs(measured.cpuMs)];
  const pairRows = context.kernelRuns === 1 ? [] : pairOverheads.map((pairOverhead, index) => [
    `pair ${index + 1}: kernel step ${formatMs(kernelSteps[index]!.wallMs)}, plain make ${formatMs(plainTotals[index]!.wallMs)}`,
    formatPercent(pairOverhead.wall),
    formatPercent(pairOverhead.cpu),
  ]);
  const plain = plains[0]!;

  return {
    id: 'host-build',
    title: `Host build (${DEVICE})`,
    notes: [
      `Fresh cache in os.tmpdir(); the ${seeded.files} pinned downloads were hard-linked from ${seeded.from}, so the cold build downloads nothing that the user's cache holds (files downloaded during the cold build: ${cold.downloads}). The cold build also creates new dev keys in the fresh cache.`,
      'The cold build runs pipeline/host-build.ts buildHostImage in the benchmark process with the options of `qwamos-build build`. The no-op rebuild runs `node bin/qwamos-build.js build --device qemu-virt-arm64 --cache-dir TMP/cache --out TMP/out` in a child process, as a user would.',
      'CPU times are user plus system time of the benchmark process and its finished child processes (/proc/self/stat), so they include make and the compilers. They depend less on other processes than wall times do, though they still grow when another process shares the core.',
    ],
    tables: [
      {
        title: 'Cold build, per step',
        header: ['step', 'status', 'wall', 'CPU'],
        rows: [
          ...cold.steps.map((step) => [step.id, step.status, formatMs(step.durationMs), formatMs(cold.stepCpuMs[step.id])]),
          ['sum of steps', '', formatMs(stepSum), ''],
          ['buildHostImage', '', formatMs(cold.wallMs), ''],
        ],
        notes: ['The buildHostImage row adds key set-up and publishing the output folder to the sum of steps.'],
      },
      {
        title: `Kernel step against plain make (same source, same final .config${context.kernelRuns > 1 ? `, median of ${context.kernelRuns} pairs` : ''})`,
        header: ['measure', 'wall', 'CPU'],
        rows: [
          row('kernel step (pipeline)', kernelStepMedian),
          row('plain make olddefconfig', medianMeasured(plains.map((each) => each.olddefconfig))),
          row(`plain make -j${availableParallelism()} ${profile.kernel.imageTarget}`, medianMeasured(plains.map((each) => each.image))),
          row('plain make total', plainTotalMedian),
          ['pipeline overhead (goal under +5 %)', formatPercent(overhead.wall), formatPercent(overhead.cpu)],
          ...pairRows,
          row('configure phase alone', configure),
          row('make -s kernelrelease alone', plain.kernelRelease),
        ],
        notes: [
          'The kernel step also runs tinyconfig, merges the config fragments, runs olddefconfig and checks every requested option (indexing Kconfig only to explain a dropped one) and the requirement rules. Then it runs `make kernelrelease`, copies the Image and .config and digests its outputs. The last two rows time the configure phase (in a separate build folder) and the kernelrelease query alone, for comparison with plain make\'s olddefconfig.',
          `Each pair runs the kernel step, then plain make. The first kernel step is the cold build's, which starts right after the source was extracted; later ones run the step's code (pipeline/steps/kernel.ts) directly, without the cache key and output digests. Plain make's ${profile.kernel.imageTarget} ${plains.every((each) => each.imageIdentical) ? 'is byte-identical to' : 'DIFFERS from'} the pipeline's.`,
          `Load from other processes (see the load average of the group) moves the wall-time overhead most; the CPU-time overhead is the steadier figure.${context.kernelRuns === 1 ? ' Use --kernel-runs N for more pairs.' : ''}`,
        ],
      },
      {
        title: 'No-op rebuild (same cache and output folder, through the CLI)',
        header: ['measure', 'value'],
        rows: [
          ['CLI wall time', formatMs(noop.wallMs)],
          ['steps cached', `${cachedSteps} of ${noop.steps.length}`],
        ],
        notes: cachedSteps === noop.steps.length ? [] : [`Steps that ran again: ${noop.steps.filter((step) => step.status !== 'cached').map((step) => step.id).join(', ')}.`],
      },
    ],
    data: {
      seededDownloads: seeded.files,
      downloadsDuringColdBuild: cold.downloads,
      cold: { wallMs: cold.wallMs, steps: cold.steps, stepCpuMs: cold.stepCpuMs },
      kernel: { steps: kernelSteps, plainMakes: plains, plainTotals, pairOverheads, overhead, configurePhase: configure },
      noop: { wallMs: noop.wallMs, steps: noop.steps, allCached: cachedSteps === noop.steps.length },
    },
  };
}
