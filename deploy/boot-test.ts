/**
 * The QEMU boot test: boots a build output folder, captures the serial
 * console into a log file, and passes only when the console shows every
 * boot marker in order before the timeout.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { QwamosError } from '../core/errors.js';
import { debianPackageFor } from '../core/host-tools.js';
import { kvmCandidate, type Accelerator } from './accelerator.js';
import { readBootConfig, type BootConfig } from './boot-config.js';
import { ConsoleWatcher, type ConsoleFailure, type MarkerHit } from './console-markers.js';
import { qemuArgs, type ExtraDisk } from './qemu-command.js';
import { checkStage0 } from './stage0-check.js';
import { createCounterStore, readCounterStore, writeCounterStore } from '../signing/manifest-counters.js';

export interface BootTestOptions {
  timeoutSeconds: number;
  /** Console transcript; defaults to DIR/logs/console.log. */
  logFile?: string;
  /**
   * Rollback counter store, attached as the guest's last disk and updated
   * by its verifier; default a fresh all-zero store at DIR/logs/counters.img.
   */
  countersFile?: string;
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
  failure?: ConsoleFailure | { kind: 'timeout' | 'qemu-exited' | 'stage0-verification-failed'; line: string; atMs: number };
  /** Counter store used, and its counters after the boot. */
  countersFile: string;
  counters: string[];
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

/** Opens the counter store, creating a fresh one when it is the default and missing. */
async function openCounters(dir: string, options: BootTestOptions): Promise<{ file: string; counters: bigint[] }> {
  if (options.countersFile) {
    // A store that does not exist yet is provisioned with all counters 0.
    if (!existsSync(options.countersFile)) await createCounterStore(options.countersFile);
    return { file: options.countersFile, counters: await readCounterStore(options.countersFile) };
  }

  const file = path.join(dir, 'logs', 'counters.img');
  await createCounterStore(file);
  return { file, counters: await readCounterStore(file) };
}

export async function runBootTest(dir: string, options: BootTestOptions): Promise<BootTestResult> {
  const loaded = await readBootConfig(dir);
  const logFile = options.logFile ?? path.join(dir, 'logs', 'console.log');
  await mkdir(path.dirname(logFile), { recursive: true });
  const store = await openCounters(dir, options);

  const stage0 = await checkStage0(dir, loaded, store.counters);
  if (!stage0.ok) {
    const line = `qwamos: verification failed: boot: ${stage0.reason}`;
    return {
      passed: false, accelerator: 'tcg', acceleratorReason: 'not started: stage 0 failed on the host', markers: [], lastLines: [line], logFile, command: [],
      failure: { kind: 'stage0-verification-failed', line, atMs: 0 },
      countersFile: store.file, counters: store.counters.map(String),
    };
  }
  await raiseCounter(store.file, store.counters, loaded.vbmeta?.rollbackIndexLocation ?? 0, stage0.rollbackIndex);

  const config: BootConfig = { ...loaded, cmdline: stage0.cmdline };
  const disks = [...(options.extraDisks ?? [])];
  if (config.counterStoreDevice) disks.push({ file: store.file, device: config.counterStoreDevice, readOnly: false });

  let choice = await kvmCandidate(config.arch);
  let args = qemuArgs(dir, config, choice.accelerator, disks);
  let run = await runQemu(config, args, logFile, options, choice.accelerator === 'kvm' ? (options.kvmProbeSeconds ?? 15) : undefined);

  if (choice.accelerator === 'kvm' && (run.outcome === 'no-output' || (run.outcome === 'exited' && run.watcher.hits.length === 0))) {
    choice = { accelerator: 'tcg', reason: `KVM probe failed (${run.outcome === 'no-output' ? 'no console output' : `QEMU exited with status ${run.exitCode}`}), using TCG` };
    args = qemuArgs(dir, config, 'tcg', disks);
    run = await runQemu(config, args, logFile, options, undefined);
  }

  const counters = (await readCounterStore(store.file).catch(() => store.counters)).map(String);
  return { ...summarize(run, choice.accelerator, choice.reason, logFile, [config.qemu.binary, ...args]), countersFile: store.file, counters };
}

/** Raises a stage-0 counter after the host check passed, as a bootloader does after verifying vbmeta. */
async function raiseCounter(file: string, counters: bigint[], location: number, index: bigint): Promise<void> {
  if (index <= (counters[location] ?? 0n)) return;
  counters[location] = index;
  await writeCounterStore(file, counters);
}

function summarize(run: QemuRun, accelerator: Accelerator, reason: string, logFile: string, command: string[]): Omit<BootTestResult, 'countersFile' | 'counters'> {
  const { watcher } = run;
  const result: Omit<BootTestResult, 'countersFile' | 'counters'> = {
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
