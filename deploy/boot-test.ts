/**
 * The QEMU boot test: boots a build output folder, captures the serial
 * console into a log file, and passes only when the console shows every
 * boot marker in order before the timeout.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { QwamosError } from '../core/errors.js';
import { debianPackageFor } from '../core/host-tools.js';
import { kvmCandidate, type Accelerator } from './accelerator.js';
import { readBootConfig, type BootConfig } from './boot-config.js';
import { ConsoleWatcher, type ConsoleFailure, type MarkerHit } from './console-markers.js';
import { qemuArgs, type ExtraDisk } from './qemu-command.js';

export interface BootTestOptions {
  timeoutSeconds: number;
  /** Console transcript; defaults to DIR/logs/console.log. */
  logFile?: string;
  extraDisks?: ExtraDisk[];
  /** Seconds to wait for the first console line under KVM before falling back to TCG. */
  kvmProbeSeconds?: number;
  onLine?(line: string): void;
}

export interface BootTestResult {
  passed: boolean;
  accelerator: Accelerator;
  acceleratorReason: string;
  /** Milliseconds from QEMU start to the runtime marker, when reached. */
  bootTimeMs?: number;
  markers: MarkerHit[];
  failure?: ConsoleFailure | { kind: 'timeout' | 'qemu-exited'; line: string; atMs: number };
  lastLines: string[];
  logFile: string;
  command: string[];
}

interface QemuRun {
  watcher: ConsoleWatcher;
  outcome: 'done' | 'timeout' | 'exited' | 'no-output';
  exitCode: number | null;
  elapsedMs: number;
}

export async function runBootTest(dir: string, options: BootTestOptions): Promise<BootTestResult> {
  const config = await readBootConfig(dir);
  const logFile = options.logFile ?? path.join(dir, 'logs', 'console.log');
  await mkdir(path.dirname(logFile), { recursive: true });

  let choice = await kvmCandidate(config.arch);
  let args = qemuArgs(dir, config, choice.accelerator, options.extraDisks);
  let run = await runQemu(config, args, logFile, options, choice.accelerator === 'kvm' ? (options.kvmProbeSeconds ?? 15) : undefined);

  if (choice.accelerator === 'kvm' && (run.outcome === 'no-output' || (run.outcome === 'exited' && run.watcher.hits.length === 0))) {
    choice = { accelerator: 'tcg', reason: `KVM probe failed (${run.outcome === 'no-output' ? 'no console output' : `QEMU exited with status ${run.exitCode}`}), using TCG` };
    args = qemuArgs(dir, config, 'tcg', options.extraDisks);
    run = await runQemu(config, args, logFile, options, undefined);
  }

  return summarize(run, choice.accelerator, choice.reason, logFile, [config.qemu.binary, ...args]);
}

function summarize(run: QemuRun, accelerator: Accelerator, reason: string, logFile: string, command: string[]): BootTestResult {
  const { watcher } = run;
  const result: BootTestResult = {
    passed: watcher.passed,
    accelerator,
    acceleratorReason: reason,
    markers: watcher.hits,
    lastLines: watcher.lastLines,
    logFile,
    command,
  };

  if (watcher.passed) {
    result.bootTimeMs = watcher.hits.at(-1)!.atMs;
  } else if (watcher.failure) {
    result.failure = watcher.failure;
  } else {
    const waitingFor = watcher.missing?.description ?? 'the end of the boot';
    result.failure = run.outcome === 'timeout'
      ? { kind: 'timeout', line: `timed out after ${Math.round(run.elapsedMs / 1000)} s waiting for ${waitingFor}`, atMs: run.elapsedMs }
      : { kind: 'qemu-exited', line: `QEMU exited with status ${run.exitCode} before ${waitingFor}`, atMs: run.elapsedMs };
  }
  return result;
}

/**
 * Starts QEMU and feeds its console to a watcher until the boot passes,
 * fails, times out or QEMU exits. QEMU is killed once the verdict is known.
 */
function runQemu(config: BootConfig, args: string[], logFile: string, options: BootTestOptions, firstOutputSeconds: number | undefined): Promise<QemuRun> {
  const watcher = new ConsoleWatcher();
  const log = createWriteStream(logFile);
  const started = Date.now();

  return new Promise<QemuRun>((resolve, reject) => {
    const child = spawn(config.qemu.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let outcome: QemuRun['outcome'] | undefined;
    let sawOutput = false;

    const finish = (result: QemuRun['outcome']): void => {
      if (outcome) return;
      outcome = result;
      clearTimeout(timer);
      clearTimeout(probeTimer);
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => finish('timeout'), options.timeoutSeconds * 1000);
    const probeTimer = firstOutputSeconds === undefined ? undefined : setTimeout(() => sawOutput || finish('no-output'), firstOutputSeconds * 1000);

    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      clearTimeout(probeTimer);
      log.end();
      if (error.code === 'ENOENT') {
        reject(new QwamosError('TOOL_MISSING', `${config.qemu.binary} is not installed; install it with: apt-get install ${debianPackageFor(config.qemu.binary) ?? 'qemu-system'}`));
      } else {
        reject(error);
      }
    });

    const onLine = (line: string): void => {
      sawOutput = true;
      const atMs = Date.now() - started;
      log.write(`${line}\n`);
      options.onLine?.(line);
      if (!outcome && watcher.feed(line, atMs)) finish('done');
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', (line) => onLine(`qemu: ${line}`));

    child.on('close', (exitCode) => {
      finish('exited');
      log.end(() => resolve({ watcher, outcome: outcome!, exitCode, elapsedMs: Date.now() - started }));
    });
  });
}
