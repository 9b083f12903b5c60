/**
 * `npm run bench`: runs the benchmark groups, each against its reference
 * tool in the same run, prints a table per group (or JSON), and with
 * --record rewrites docs/benchmarks.md with the results.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { formatTable, parseCommandArgs } from '../cli/command.js';
import { writeFileAtomic } from '../core/atomic.js';
import { QwamosError, isQwamosError } from '../core/errors.js';
import { runTool } from '../core/exec.js';
import { REPO_ROOT } from '../core/schema.js';
import { benchAndroid } from './bench-android.js';
import { benchBootChain } from './bench-boot-chain.js';
import { benchHostBuild } from './bench-host-build.js';
import { type BenchContext, type BenchTable, type GroupResult, loadAverage, progress } from './bench-measure.js';

const RECORD_FILE = path.join(REPO_ROOT, 'docs', 'benchmarks.md');
const DEFAULT_RUNS = 7;

interface Group {
  id: string;
  /** True for groups that compile the kernel, which --quick skips. */
  kernel: boolean;
  run(context: BenchContext, options: { buildDir?: string }): Promise<GroupResult>;
}

/** In run order: boot-chain uses the output of host-build when both run. */
const GROUPS: readonly Group[] = [
  { id: 'host-build', kernel: true, run: (context) => benchHostBuild(context) },
  { id: 'boot-chain', kernel: false, run: (context, options) => benchBootChain(context, options.buildDir) },
  { id: 'android', kernel: false, run: (context) => benchAndroid(context) },
];

const HELP = `Usage: npm run bench -- [--only GROUP]... [--quick] [--runs N] [--kernel-runs N] [--build-dir DIR] [--json] [--record]

Runs the benchmarks, each against its reference tool in the same run, and
prints a table per group. Progress lines go to stderr.

Groups, in run order:
  host-build   cold build of qemu-virt-arm64 per step, the kernel step against
               plain make, the no-op rebuild (about 15 minutes on 2 cores)
  boot-chain   ML-DSA-87 sign and verify per stage on the host (TypeScript and
               the C verifier), verifier time inside the QEMU guest
  android      dm-verity hash tree over 1 GiB against veritysetup, vbmeta
               signing and verification, sparse images against img2simg/simg2img

Options:
  --only GROUP     run only this group; repeat for several
  --quick          skip the groups that compile a kernel (host-build)
  --runs N         repetitions of each short measurement, whose median is
                   reported (default ${DEFAULT_RUNS}; the 1 GiB and 256 MiB file
                   measurements use at most 5)
  --kernel-runs N  pairs of kernel step and plain make builds in host-build
                   (default 1; each further pair adds about 6 minutes on 2 cores)
  --build-dir DIR  build output for boot-chain (default: the output of
                   host-build in this run, else out/qemu-virt-arm64)
  --json           print the results as JSON instead of tables
  --record         rewrite docs/benchmarks.md with the results of this run`;

interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  /** Niceness the benchmark ran with (os.getPriority()). */
  nice: number;
  tools: Record<string, string>;
}

async function cpuModel(): Promise<string> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  return /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
}

/** First output line of `command --version`, or "not installed". */
async function toolVersion(command: string, args: string[] = ['--version']): Promise<string> {
  try {
    const { stdout, stderr } = await runTool(command, args);
    return (stdout || stderr).split('\n')[0]!.trim();
  } catch (error) {
    if (isQwamosError(error)) return 'not installed';
    throw error;
  }
}

async function machineInfo(): Promise<MachineInfo> {
  return {
    nproc: os.availableParallelism(),
    cpuModel: await cpuModel(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    nice: os.getPriority(),
    tools: {
      make: await toolVersion('make'),
      'aarch64-linux-gnu-gcc': await toolVersion('aarch64-linux-gnu-gcc'),
      gcc: await toolVersion('gcc'),
      veritysetup: await toolVersion('veritysetup'),
      'qemu-system-aarch64': await toolVersion('qemu-system-aarch64'),
      // img2simg and simg2img print no version; their Debian package has one.
      'android-sdk-libsparse-utils': await toolVersion('dpkg-query', ['-W', '-f=${Version}', 'android-sdk-libsparse-utils']),
    },
  };
}

function parseCount(option: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^[1-9]\d{0,3}$/.test(value)) throw new QwamosError('USAGE', `bench: ${option} must be a whole number from 1 to 9999, got '${value}'`);
  return Number(value);
}

function selectGroups(only: string[] | undefined, quick: boolean): Group[] {
  for (const id of only ?? []) {
    if (!GROUPS.some((group) => group.id === id)) {
      throw new QwamosError('USAGE', `bench: unknown group '${id}' for --only; use one of ${GROUPS.map((group) => group.id).join(', ')}`);
    }
  }
  return GROUPS.filter((group) => (only === undefined || only.includes(group.id)) && !(quick && group.kernel));
}

interface GroupRun {
  result?: GroupResult;
  id: string;
  error?: string;
  loadBefore: number[];
  loadAfter: number[];
  wallSeconds: number;
}

function commandLine(argv: string[]): string {
  const base = process.env.npm_lifecycle_event === 'bench' ? 'npm run bench' : 'node dist/ci/bench.js';
  const nice = os.getPriority();
  const prefix = nice !== 0 ? `nice -n ${nice} ` : '';
  return `${prefix}${base}${argv.length > 0 ? `${base.startsWith('npm') ? ' --' : ''} ${argv.join(' ')}` : ''}`;
}

function printTable(table: BenchTable): void {
  process.stdout.write(`\n${table.title}\n${formatTable(table.header, table.rows)}\n`);
  for (const note of table.notes) process.stdout.write(`  note: ${note}\n`);
}

function printGroup(run: GroupRun): void {
  const title = run.result?.title ?? run.id;
  process.stdout.write(`\n== ${title} (${run.wallSeconds.toFixed(0)} s, load average before ${run.loadBefore.join(' ')}, after ${run.loadAfter.join(' ')}) ==\n`);
  if (run.error) {
    process.stdout.write(`FAILED: ${run.error}\n`);
    return;
  }
  for (const note of run.result!.notes) process.stdout.write(`${note}\n`);
  for (const table of run.result!.tables) printTable(table);
}

function markdownCell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function markdownTable(table: BenchTable): string[] {
  const lines = [`### ${table.title}`, '', `| ${table.header.map(markdownCell).join(' | ')} |`, `| ${table.header.map(() => '---').join(' | ')} |`];
  for (const row of table.rows) lines.push(`| ${row.map(markdownCell).join(' | ')} |`);
  lines.push('');
  for (const note of table.notes) lines.push(`- ${note}`);
  if (table.notes.length > 0) lines.push('');
  return lines;
}

/** Renders docs/benchmarks.md for the results of one run. */
function recordMarkdown(argv: string[], started: Date, machine: MachineInfo, runs: GroupRun[]): string {
  const lines = [
    '# Benchmarks',
    '',
    'Speed and memory goals are measured here, never by timed tests. Each',
    'benchmark runs the reference tool in the same run on the same input.',
    'Run `npm run bench -- --help` for the options; `--record` rewrites this',
    'file with the results of that run. This file is generated by ci/bench.ts.',
    '',
    '## Recorded run',
    '',
    `- Command: \`${commandLine(argv)}\``,
    `- Date: ${started.toISOString()}`,
    `- Machine: ${machine.nproc} CPUs (nproc), ${machine.cpuModel}, ${machine.memoryGiB} GiB memory, ${machine.kernel}`,
    `- Node.js ${machine.node}; ${Object.entries(machine.tools).map(([name, version]) => `${name}: ${version}`).join('; ')}`,
    '- Each group lists the load average (1, 5 and 15 minutes) before and after it. It counts the benchmark\'s own processes too and lags by about a minute, so a load near 2 right after the kernel compile comes from the benchmark itself.',
    '',
  ];

  for (const run of runs) {
    lines.push(`## ${run.result?.title ?? run.id}`, '');
    lines.push(`Group \`${run.id}\`: ${run.wallSeconds.toFixed(0)} s; load average before ${run.loadBefore.join(' ')}, after ${run.loadAfter.join(' ')}.`, '');
    if (run.error) {
      lines.push(`FAILED: ${run.error}`, '');
      continue;
    }
    for (const note of run.result!.notes) lines.push(note, '');
    for (const table of run.result!.tables) lines.push(...markdownTable(table));
  }
  return `${lines.join('\n').trimEnd()}\n`;
}

async function runGroup(group: Group, context: BenchContext, buildDir: string | undefined): Promise<GroupRun> {
  const loadBefore = loadAverage();
  const started = process.hrtime.bigint();
  progress(`group ${group.id}: started, load average ${loadBefore.join(' ')}`);

  let result: GroupResult | undefined;
  let error: string | undefined;
  try {
    result = await group.run(context, buildDir === undefined ? {} : { buildDir });
  } catch (caught) {
    if (!isQwamosError(caught)) throw caught;
    error = [caught.message, ...caught.details].join('\n  ');
    progress(`group ${group.id}: failed: ${error}`);
  }

  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  progress(`group ${group.id}: finished in ${wallSeconds.toFixed(0)} s`);
  return { id: group.id, ...(result ? { result } : {}), ...(error ? { error } : {}), loadBefore, loadAfter: loadAverage(), wallSeconds };
}

async function runCleanups(context: BenchContext): Promise<void> {
  for (const cleanup of context.cleanups.splice(0).reverse()) await cleanup();
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs('bench', argv, {
    only: { type: 'string', multiple: true },
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    'kernel-runs': { type: 'string' },
    'build-dir': { type: 'string' },
    json: { type: 'boolean', default: false },
    record: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }

  const groups = selectGroups(values.only, values.quick);
  const context: BenchContext = { runs: parseCount('--runs', values.runs, DEFAULT_RUNS), kernelRuns: parseCount('--kernel-runs', values['kernel-runs'], 1), cleanups: [] };
  const interrupted = (): void => {
    progress('interrupted; removing temporary files');
    void runCleanups(context).finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);

  const started = new Date();
  const machine = await machineInfo();
  const load = loadAverage();
  progress(`${machine.nproc} CPUs, ${machine.cpuModel}; load average ${load.join(' ')}; groups: ${groups.map((group) => group.id).join(', ')}`);
  if ((load[0] ?? 0) > 0.5) progress('the 1-minute load average is above 0.5, so other processes may be using the CPUs and make the times longer; each group records the load');

  const runs: GroupRun[] = [];
  try {
    for (const group of groups) runs.push(await runGroup(group, context, values['build-dir']));
  } finally {
    await runCleanups(context);
    process.removeListener('SIGINT', interrupted);
  }

  if (values.json) {
    process.stdout.write(`${JSON.stringify({ command: commandLine(argv), date: started.toISOString(), machine, groups: runs }, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value), 2)}\n`);
  } else {
    for (const run of runs) printGroup(run);
  }

  if (values.record) {
    await writeFileAtomic(RECORD_FILE, recordMarkdown(argv, started, machine, runs));
    progress(`recorded the results in ${path.relative(process.cwd(), RECORD_FILE)}`);
  }
  return runs.some((run) => run.error !== undefined) ? 1 : 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (!isQwamosError(error)) throw error;
  const message = error.message.startsWith('bench:') ? error.message : `bench: ${error.message}`;
  process.stderr.write(`${message}\n${error.details.map((line) => `  ${line}\n`).join('')}`);
  process.exitCode = error.exitStatus;
}
