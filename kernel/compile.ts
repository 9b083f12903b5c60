/**
 * The kernel compile step: `make Image` in a configured build folder with
 * fixed build metadata, so that two builds of the same source, config and
 * SOURCE_DATE_EPOCH produce the same version banner.
 */
import { availableParallelism } from 'node:os';
import { mkdir, open, stat } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError, isQwamosError } from '../core/errors.js';
import { type KernelTree, checkBuildTools, queryMake, runMake, sourceArch } from './make.js';

export interface CompileOptions extends KernelTree {
  /** Parallel make jobs; defaults to the number of CPUs. */
  jobs?: number;
  /** Seconds since 1970 for the build timestamp; defaults to SOURCE_DATE_EPOCH, else 0. */
  sourceDateEpoch?: number;
  /** Make target that builds the boot image; defaults to `Image` (arm64). */
  target?: string;
}

export interface CompileResult {
  /** Path of arch/<arch>/boot/<target> in the build folder. */
  imagePath: string;
  /** Path of the `.config` the kernel was built with. */
  configPath: string;
  /** `make kernelrelease` output, such as `6.1.192`. */
  kernelRelease: string;
  /** Wall-clock seconds of the make run. */
  seconds: number;
}

/** Lines of the log shown before and after each error line. */
const ERROR_CONTEXT_LINES = 2;
/** Most log lines put into a KERNEL_BUILD_FAILED error. */
const MAX_ERROR_LINES = 60;

/** Compiles the kernel in a build folder that configureKernel prepared. */
export async function compileKernel(options: CompileOptions): Promise<CompileResult> {
  await checkBuildTools(options);
  const target = options.target ?? 'Image';
  const jobs = options.jobs ?? availableParallelism();
  await mkdir(path.dirname(options.logFile), { recursive: true });
  const logStart = await fileSize(options.logFile);
  const started = process.hrtime.bigint();

  try {
    await runMake(options, [target], { extra: [`-j${jobs}`], env: buildEnvironment(options) });
  } catch (error) {
    if (!isQwamosError(error, 'COMMAND_FAILED')) throw error;
    const failing = extractBuildErrors(await readLogFrom(options.logFile, logStart));
    throw new QwamosError('KERNEL_BUILD_FAILED', `kernel build of ${target} failed in ${options.buildDir}; the full output is in ${options.logFile}`, {
      details: failing.length > 0 ? failing : error.details,
      data: { logFile: options.logFile, exitCode: error.data.exitCode },
      cause: error,
    });
  }

  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const kernelRelease = await queryMake(options, 'kernelrelease');
  return {
    imagePath: path.join(options.buildDir, 'arch', sourceArch(options), 'boot', target),
    configPath: path.join(options.buildDir, '.config'),
    kernelRelease,
    seconds,
  };
}

/**
 * Build metadata that the kernel would otherwise take from the host: the
 * time, user and host name in the version banner and the build counter.
 */
export function buildEnvironment(options: Pick<CompileOptions, 'sourceDateEpoch'>): Record<string, string> {
  const epoch = options.sourceDateEpoch ?? sourceDateEpochFromEnvironment();
  return {
    KBUILD_BUILD_TIMESTAMP: formatBuildTimestamp(epoch),
    KBUILD_BUILD_USER: 'qwamos',
    KBUILD_BUILD_HOST: 'qwamos-build',
    KBUILD_BUILD_VERSION: '1',
    // Untranslated compiler messages, so that extractBuildErrors finds "error:".
    LC_ALL: 'C',
  };
}

function sourceDateEpochFromEnvironment(): number {
  const value = process.env.SOURCE_DATE_EPOCH;
  if (value === undefined || value === '') return 0;
  if (!/^[0-9]+$/.test(value)) {
    throw new QwamosError('INPUT_INVALID', `SOURCE_DATE_EPOCH='${value}' is not a number of seconds since 1970; unset it or set it to an integer`);
  }
  return Number(value);
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * Formats seconds since 1970 in UTC as `date -u` prints them
 * ("Thu Jan  1 00:00:00 UTC 1970"). The kernel puts this text in its
 * version banner and parses it with `date -d` for the initramfs timestamps.
 */
export function formatBuildTimestamp(epochSeconds: number): string {
  const date = new Date(epochSeconds * 1000);
  const pad = (value: number): string => String(value).padStart(2, '0');
  const time = `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}`;
  const day = String(date.getUTCDate()).padStart(2, ' ');
  return `${DAYS[date.getUTCDay()]} ${MONTHS[date.getUTCMonth()]} ${day} ${time} UTC ${date.getUTCFullYear()}`;
}

/**
 * Picks the lines that explain a failed build: compiler `error:` lines,
 * make's `Error N` and `***` lines, each with a few lines around it.
 * Groups that are not adjacent are separated by "...".
 */
export function extractBuildErrors(log: string): string[] {
  const lines = log.split('\n');
  const isError = (line: string): boolean => /error:|\bError \d+|\*\*\*/.test(line);
  const keep = new Set<number>();

  lines.forEach((line, index) => {
    if (!isError(line)) return;
    for (let offset = -ERROR_CONTEXT_LINES; offset <= ERROR_CONTEXT_LINES; offset++) {
      const contextIndex = index + offset;
      if (contextIndex >= 0 && contextIndex < lines.length && lines[contextIndex] !== '') keep.add(contextIndex);
    }
  });

  const result: string[] = [];
  let previous = -1;
  for (const index of [...keep].sort((a, b) => a - b)) {
    if (previous >= 0 && index > previous + 1) result.push('...');
    result.push(lines[index]!);
    previous = index;
  }

  if (result.length <= MAX_ERROR_LINES) return result;
  return [...result.slice(0, MAX_ERROR_LINES), `... ${result.length - MAX_ERROR_LINES} more lines in the log`];
}

async function fileSize(filePath: string): Promise<number> {
  return stat(filePath).then((info) => info.size, () => 0);
}

/** Reads the part of the log that this run appended. */
async function readLogFrom(filePath: string, offset: number): Promise<string> {
  const handle = await open(filePath, 'r');
  try {
    const size = (await handle.stat()).size;
    const buffer = Buffer.alloc(Math.max(0, size - offset));
    await handle.read(buffer, 0, buffer.length, offset);
    return buffer.toString('utf8');
  } finally {
    await handle.close();
  }
}
