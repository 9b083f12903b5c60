/**
 * Shared parts of the benchmark groups: the result shape, timing of
 * in-process work and of host programs, medians and number formatting.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { hasTool, runTool, type RunOptions, type RunResult } from '../core/exec.js';
import { debianPackageFor } from '../core/host-tools.js';

/** One table of a group's results, printed as text and recorded as Markdown. */
export interface BenchTable {
  title: string;
  header: string[];
  rows: string[][];
  /** Sentences printed under the table: method, caveats, what a column contains. */
  notes: string[];
}

/** The results of one benchmark group. */
export interface GroupResult {
  id: string;
  title: string;
  tables: BenchTable[];
  /** Sentences printed under the group: inputs, methods, load. */
  notes: string[];
  /** The measured numbers, unformatted, for --json. */
  data: Record<string, unknown>;
}

/** State shared by the groups of one run. */
export interface BenchContext {
  /** Repetitions of short measurements, whose median is reported. */
  runs: number;
  /** Pairs of kernel step and plain make builds in the host-build group. */
  kernelRuns: number;
  /** A build output folder made in this run (by the host-build group), for the boot-chain group. */
  buildOutputDir?: string;
  /** Called at the end of the run, in reverse order, to remove temporary folders. */
  cleanups: Array<() => Promise<void>>;
}

/** Writes a progress line to stderr, so that stdout carries only the tables or JSON. */
export function progress(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

/** Creates a folder under os.tmpdir() that the context removes at the end of the run. */
export async function temporaryFolder(context: BenchContext, name: string): Promise<string> {
  const folder = await mkdtemp(path.join(os.tmpdir(), `qwamos-bench-${name}-`));
  context.cleanups.push(() => rm(folder, { recursive: true, force: true }));
  return folder;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function elapsedMs(startedNs: bigint): number {
  return Number(process.hrtime.bigint() - startedNs) / 1e6;
}

/** Linux reports times in /proc in USER_HZ ticks, which is 100 on every architecture. */
const USER_HZ = 100;

/**
 * Returns the CPU time, in milliseconds, that this process (all threads)
 * and its waited-for children and their descendants have used: utime,
 * stime, cutime and cstime from /proc/self/stat. Differences of this value
 * measure work that runs in child processes, such as make, even when other
 * processes compete for the CPUs.
 */
export function processTreeCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // Fields after the parenthesized command name start with field 3 (state); utime is field 14.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  const ticks = fields.slice(11, 15).reduce((sum, value) => sum + value, 0);
  return (ticks * 1000) / USER_HZ;
}

/** Wall time, CPU time of all threads of this process, and sampled peak RSS of one in-process run. */
export interface InProcessTiming<T> {
  result: T;
  wallMs: number;
  cpuMs: number;
  /** Highest RSS seen by a 10 ms sampler during the run, in bytes. */
  peakRssBytes: number;
  /** RSS just before the run, in bytes. */
  startRssBytes: number;
}

/** Interval of the RSS sampler. */
const RSS_SAMPLE_MS = 10;

/**
 * Runs `work` and measures it. CPU time comes from process.cpuUsage(), which
 * counts worker threads too. The RSS sampler runs on the event loop, so it
 * misses peaks during long synchronous stretches of `work`.
 */
export async function measureInProcess<T>(work: () => Promise<T>): Promise<InProcessTiming<T>> {
  const startRssBytes = process.memoryUsage.rss();
  let peakRssBytes = startRssBytes;
  const sampler = setInterval(() => {
    peakRssBytes = Math.max(peakRssBytes, process.memoryUsage.rss());
  }, RSS_SAMPLE_MS);

  const cpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  try {
    const result = await work();
    const wallMs = elapsedMs(started);
    const cpu = process.cpuUsage(cpuBefore);
    peakRssBytes = Math.max(peakRssBytes, process.memoryUsage.rss());
    return { result, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, peakRssBytes, startRssBytes };
  } finally {
    clearInterval(sampler);
  }
}

/**
 * Returns the median wall time in milliseconds of `runs` calls of `work`,
 * after one untimed call that warms the JIT and the page cache.
 */
export async function medianMs(runs: number, work: () => unknown): Promise<number> {
  await work();
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const started = process.hrtime.bigint();
    await work();
    times.push(elapsedMs(started));
  }
  return median(times);
}

/** Wall time of a host program, with its CPU time and peak RSS when GNU time is installed. */
export interface ToolTiming extends RunResult {
  wallMs: number;
  /** User plus system CPU time from GNU time, in milliseconds (10 ms resolution). */
  cpuMs?: number;
  /** Maximum resident set size from GNU time, in bytes. */
  peakRssBytes?: number;
}

/** GNU time, which reports the CPU time and peak RSS of the program it runs. */
const GNU_TIME = '/usr/bin/time';

export function hasGnuTime(): boolean {
  return existsSync(GNU_TIME);
}

/** Throws TOOL_MISSING naming the Debian package when `command` is not on PATH. */
export async function requireTool(command: string): Promise<void> {
  if (await hasTool(command)) return;
  const debianPackage = debianPackageFor(command);
  const fix = debianPackage ? `install it with: apt-get install ${debianPackage}` : 'install it and make sure it is on PATH';
  throw new QwamosError('TOOL_MISSING', `${command} is not installed, and the benchmark compares against it; ${fix}`, { data: { tool: command, debianPackage } });
}

/**
 * Runs a host program through runTool and measures its wall time here. When
 * GNU time is installed the program runs under it, which adds its user and
 * system time and its peak RSS. The wall time then includes starting GNU
 * time.
 */
export async function runTimedTool(command: string, args: readonly string[], options: RunOptions & { workDir: string }): Promise<ToolTiming> {
  await requireTool(command);
  if (!hasGnuTime()) {
    const started = process.hrtime.bigint();
    const output = await runTool(command, args, options);
    return { ...output, wallMs: elapsedMs(started) };
  }

  const report = path.join(options.workDir, `time-${process.pid}-${Date.now()}.txt`);
  const started = process.hrtime.bigint();
  // -f: user seconds, system seconds, maximum RSS in KiB; -o: a file, so the program's stderr stays its own.
  const output = await runTool(GNU_TIME, ['-f', '%U %S %M', '-o', report, command, ...args], options);
  const wallMs = elapsedMs(started);

  const fields = (await readFile(report, 'utf8')).trim().split('\n').at(-1)!.split(' ').map(Number);
  await rm(report, { force: true });
  const [user = Number.NaN, system = Number.NaN, rssKiB = Number.NaN] = fields;
  return { ...output, wallMs, cpuMs: (user + system) * 1000, peakRssBytes: rssKiB * 1024 };
}

/** Returns the 1, 5 and 15 minute load averages, rounded to two decimals. */
export function loadAverage(): number[] {
  return os.loadavg().map((value) => Math.round(value * 100) / 100);
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined || Number.isNaN(ms)) return 'n/a';
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function formatMiB(bytes: number | undefined): string {
  if (bytes === undefined || Number.isNaN(bytes)) return 'n/a';
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** Formats `value / reference` as "1.23x". */
export function formatRatio(value: number, reference: number): string {
  return `${(value / reference).toFixed(2)}x`;
}

export function formatPercent(fraction: number): string {
  return `${fraction >= 0 ? '+' : ''}${(fraction * 100).toFixed(1)} %`;
}
