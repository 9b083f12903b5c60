/**
 * Flashes Samsung phones in Download mode with `heimdall` (Debian package
 * heimdall-flash 1.4.2). A plan becomes three heimdall calls:
 *
 *   heimdall detect                     Download mode check (exit status 0)
 *   heimdall print-pit --no-reboot      the device's partition table (PIT)
 *   heimdall flash --BOOT boot.img ... --resume [--no-reboot]
 *
 * Partitions are named by their PIT names from the profile (`pitName`).
 * heimdall cannot read a product name, so the PIT check takes its place:
 * every partition the plan writes must be listed in the device's PIT.
 * Samsung bootloaders take no custom AVB key, so there is no re-lock step.
 */
import { QwamosError } from '../core/errors.js';
import { checkResult, type CheckResult } from './flash-checks.js';
import { runLogged, type FlashLog } from './flash-log.js';
import type { FlashPlan } from './flash-plan.js';

export interface HeimdallTimeouts {
  /** Milliseconds for `detect` and `print-pit`. Default 60 000. */
  commandMs: number;
  /** Milliseconds for `flash`: a base plus a time per MiB of images. Default 120 000 + 2 000 per MiB. */
  flashBaseMs: number;
  flashPerMiBMs: number;
}

export const DEFAULT_HEIMDALL_TIMEOUTS: HeimdallTimeouts = { commandMs: 60_000, flashBaseMs: 120_000, flashPerMiBMs: 2_000 };

export interface HeimdallProgressEvent {
  /** PIT name of the partition heimdall is uploading. */
  partition: string;
  phase: 'start' | 'done';
}

/**
 * Returns the argv of `heimdall flash` for a plan. `resume` continues the
 * session that `print-pit --no-reboot` left open, as heimdall requires for
 * a second action without a reboot in between.
 */
export function heimdallFlashArgs(plan: FlashPlan, options: { resume: boolean }): string[] {
  const args = ['flash'];
  for (const step of plan.steps) {
    if (step.kind === 'flash') args.push(`--${step.target}`, step.image.path);
  }
  if (options.resume) args.push('--resume');
  // Without --no-reboot heimdall reboots the phone when the upload ends.
  if (!plan.reboot) args.push('--no-reboot');
  return args;
}

/** Lists the partition names in `heimdall print-pit` output ("Partition Name: BOOT" lines). */
export function parsePitPartitionNames(output: string): string[] {
  const names: string[] = [];
  for (const line of output.split('\n')) {
    const match = /^Partition Name:\s*(.*?)\s*$/.exec(line);
    if (match && match[1]) names.push(match[1]);
  }
  return names;
}

export class HeimdallClient {
  constructor(
    readonly log: FlashLog,
    readonly timeouts: HeimdallTimeouts = DEFAULT_HEIMDALL_TIMEOUTS,
    readonly program = 'heimdall',
  ) {}

  /** Runs `heimdall detect`: exit status 0 means a device in Download mode is connected. */
  async checkDownloadMode(): Promise<CheckResult> {
    const run = await runLogged(this.program, ['detect'], this.log, this.timeouts.commandMs);
    if (run.exited) return checkResult('download-mode', true, 'heimdall detects a device in Download mode');
    const said = run.lines.find((line) => /ERROR/.test(line)) ?? run.error ?? 'no device';
    return checkResult('download-mode', false, `heimdall detects no device in Download mode (${said}); hold Volume Down and Power (Volume Up and Down on newer models) while connecting USB, then confirm Download mode on the phone`);
  }

  /**
   * Reads the PIT with `print-pit --no-reboot` and checks that it lists
   * every PIT name the plan writes. A missing name means another model or a
   * wrong profile.
   */
  async checkPit(plan: FlashPlan): Promise<CheckResult> {
    const run = await runLogged(this.program, ['print-pit', '--no-reboot'], this.log, this.timeouts.commandMs);
    if (!run.exited) {
      return checkResult('pit', false, `heimdall print-pit failed (${run.lines[run.lines.length - 1] ?? run.error}), so the partition names cannot be checked; reconnect the phone in Download mode`);
    }
    const listed = new Set(parsePitPartitionNames(run.lines.join('\n')));
    const wanted = plan.steps.flatMap((step) => (step.kind === 'flash' ? [step.target] : []));
    const missing = wanted.filter((name) => !listed.has(name));
    if (missing.length === 0) return checkResult('pit', true, `the device's PIT lists ${wanted.join(', ')}`);
    return checkResult('pit', false, `the device's PIT has no partition ${missing.join(', ')} (it lists ${listed.size} partitions); this is not a ${plan.device} or the profile's pitName is wrong, so check the phone and device-profiles/${plan.device}.yaml`);
  }

  /** Runs `heimdall flash` for the plan, reporting each partition as heimdall uploads it. */
  async flash(plan: FlashPlan, onProgress?: (event: HeimdallProgressEvent) => void): Promise<void> {
    const args = heimdallFlashArgs(plan, { resume: true });
    const bytes = plan.images.reduce((total, image) => total + image.fileSize, 0);
    const timeoutMs = this.timeouts.flashBaseMs + Math.ceil(bytes / (1024 * 1024)) * this.timeouts.flashPerMiBMs;
    // heimdall 1.4.2 prints "Uploading NAME" before and "NAME upload successful" after each partition.
    const report = (line: string): void => {
      const started = /^Uploading (\S+)/.exec(line);
      const finished = /^(\S+) upload successful/.exec(line);
      if (started) onProgress?.({ partition: started[1]!, phase: 'start' });
      if (finished) onProgress?.({ partition: finished[1]!, phase: 'done' });
    };
    const run = await runLogged(this.program, args, this.log, timeoutMs, report);
    if (run.exited) return;

    const failed = run.lines.map((line) => /^(\S+) upload failed/.exec(line)?.[1]).find((name) => name !== undefined);
    const uploading = [...run.lines].reverse().map((line) => /^Uploading (\S+)/.exec(line)?.[1]).find((name) => name !== undefined);
    const partition = failed ?? uploading;
    const where = partition ? `while writing ${partition}` : 'before any partition was written';
    const why = run.timedOut ? `no progress within ${Math.round(timeoutMs / 1000)} s` : (run.lines[run.lines.length - 1] ?? run.error);
    throw new QwamosError('FLASH_FAILED', `heimdall flash failed ${where}: ${why}; the phone stays in Download mode, so reconnect it and run flash again`, {
      details: run.lines.slice(-20),
      data: { partition, timedOut: run.timedOut },
    });
  }
}
