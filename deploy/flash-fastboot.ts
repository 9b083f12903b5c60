/**
 * Runs a fastboot flash plan through the `fastboot` program (Debian package
 * fastboot 29.0.6): one invocation per step, each logged, each with a
 * timeout. fastboot 29.0.6 waits without end for a device that does not
 * respond, and for a TCP peer that closes the connection (FIN) mid-transfer.
 *
 * Images larger than the device's max-download-size are split with our
 * sparse writer into parts of at most that size, and each part is flashed
 * with its own `fastboot flash PART FILE`. Every part is a sparse image of
 * the whole partition whose blocks held by the other parts are DONT_CARE,
 * so the device assembles the image from the parts in order. fastboot
 * sends a file of at most max-download-size as it is, so the device gets
 * exactly these parts. fastboot could split a large file itself, but
 * 29.0.6 sends a truncated sparse image when the file size is not a
 * multiple of 4096 (test/deploy/fastboot-emulator.test.ts shows it).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { readSparseImage, unsparseImages } from '../images/sparse-read.js';
import { writeSparseImage } from '../images/sparse-write.js';
import type { DeviceProfile } from '../pipeline/profiles.js';
import { parseDeviceNumber, parseFastbootDevices, parseSlot, productResult, type FastbootQueries } from './flash-checks.js';
import { runLogged, type FlashLog } from './flash-log.js';
import { AVB_CUSTOM_KEY_PARTITION, type FlashImage, type FlashPlan, type FlashStep } from './flash-plan.js';

export interface FastbootTimeouts {
  /** Milliseconds for a getvar, erase, set_active or reboot. Default 15 000. */
  commandMs: number;
  /** Milliseconds to wait for the device to come back after a reboot into fastbootd or the bootloader. Default 120 000. */
  rebootMs: number;
  /**
   * Milliseconds for a transfer: a base plus a time per MiB. Default
   * 60 000 + 2 000 per MiB (0.5 MiB/s). NOTE: an estimate with room for
   * slow USB 2.0 links and flash writes, not measured on a phone.
   */
  transferBaseMs: number;
  transferPerMiBMs: number;
}

export const DEFAULT_FASTBOOT_TIMEOUTS: FastbootTimeouts = {
  commandMs: 15_000,
  rebootMs: 120_000,
  transferBaseMs: 60_000,
  transferPerMiBMs: 2_000,
};

/** Output of one fastboot invocation. */
export interface FastbootRun {
  ok: boolean;
  lines: string[];
  timedOut: boolean;
  /** The failure in fastboot's words, such as "remote: 'partition does not exist'". */
  failure?: string;
}

/** Runs `fastboot -s SERIAL ...`, logging each invocation and its output. */
export class FastbootClient implements FastbootQueries {
  constructor(
    readonly serial: string | undefined,
    readonly log: FlashLog,
    readonly timeouts: FastbootTimeouts = DEFAULT_FASTBOOT_TIMEOUTS,
    readonly program = 'fastboot',
  ) {}

  /** Runs one fastboot command; a failure is returned, not thrown, so the caller can name the step. */
  async run(args: readonly string[], timeoutMs: number): Promise<FastbootRun> {
    // -s pins every command to one device, so a second phone plugged in mid-session is never written.
    const argv = this.serial === undefined ? [...args] : ['-s', this.serial, ...args];
    const run = await runLogged(this.program, argv, this.log, timeoutMs);
    const reported = run.lines.map(fastbootFailure).find((text) => text !== undefined);
    if (run.exited && reported === undefined) return { ok: true, lines: run.lines, timedOut: false };

    const failure = reported
      ?? (run.timedOut ? `no response from the device within ${Math.round(timeoutMs / 1000)} s` : run.lines[run.lines.length - 1] ?? run.error);
    return { ok: false, lines: run.lines, timedOut: run.timedOut, failure };
  }

  /**
   * Runs `getvar NAME`; returns undefined when the device responds FAIL and
   * throws FLASH_FAILED when no device responds at all.
   */
  async getvar(name: string, timeoutMs = this.timeouts.commandMs): Promise<string | undefined> {
    const result = await this.run(['getvar', name], timeoutMs);
    if (result.failure?.startsWith('remote:')) return undefined;
    if (!result.ok) {
      throw new QwamosError('FLASH_FAILED', `fastboot getvar ${name} failed on ${this.serial ?? 'the device'}: ${result.failure}; check that the phone is connected and in fastboot mode`, {
        details: result.lines,
        data: { variable: name, timedOut: result.timedOut },
      });
    }
    const prefix = `${name}: `;
    const line = result.lines.find((text) => text.startsWith(prefix));
    return line === undefined ? undefined : line.slice(prefix.length).trim();
  }

  /** Lists the serial numbers of USB devices in fastboot mode. */
  async devices(): Promise<string[]> {
    const result = await this.run(['devices'], this.timeouts.commandMs);
    if (!result.ok) {
      throw new QwamosError('FLASH_FAILED', `'fastboot devices' failed: ${result.failure}`, { details: result.lines });
    }
    return parseFastbootDevices(result.lines.join('\n'));
  }
}

/** Extracts the reason from a fastboot "FAILED (...)" line. */
export function fastbootFailure(line: string): string | undefined {
  const match = /FAILED \((.*)\)\s*$/.exec(line);
  return match ? match[1] : undefined;
}

export interface FastbootProgressEvent {
  /** Index of the step in plan.steps, from 0. */
  index: number;
  total: number;
  step: FlashStep;
  phase: 'start' | 'done';
  /** For an image sent in several sparse parts: which part, from 1. */
  part?: { number: number; count: number };
}

/** One value read from the device after flashing, and what it should be. */
export interface ReadbackEntry {
  variable: string;
  value?: string;
  /** The expected value, when the plan decides it. */
  expected?: string;
  ok: boolean;
}

export interface ExecuteFastbootOptions {
  profile: DeviceProfile;
  /** max-download-size the bootloader reported; undefined if it reported none. */
  maxDownloadSize?: number;
  onProgress?: (event: FastbootProgressEvent) => void;
}

/**
 * Carries out the plan's steps in order and returns what it read back. The
 * plan's slots must be resolved. Throws FLASH_FAILED naming the step when
 * fastboot fails, the transfer breaks off, or a read-back value differs.
 */
export async function executeFastbootPlan(plan: FlashPlan, client: FastbootClient, options: ExecuteFastbootOptions): Promise<ReadbackEntry[]> {
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'qwamos-flash-'));
  const readback: ReadbackEntry[] = [];
  let maxDownloadSize = options.maxDownloadSize;

  try {
    for (const [index, step] of plan.steps.entries()) {
      const progress = (phase: 'start' | 'done', part?: FastbootProgressEvent['part']): void =>
        options.onProgress?.({ index, total: plan.steps.length, step, phase, part });

      if (step.kind === 'reboot') {
        await checkReadback(plan, client, readback);
      }

      progress('start');
      switch (step.kind) {
        case 'flash': {
          const flashedSize = await flashImage(plan, client, step, maxDownloadSize, workDir, progress);
          if (step.image.logical) readback.push(await readLogicalSize(client, step.target, flashedSize));
          break;
        }
        case 'reboot-fastboot':
          await runStep(plan, client, step, ['reboot', 'fastboot'], client.timeouts.rebootMs);
          await expectMode(client, options.profile, 'fastbootd');
          // fastbootd reports its own max-download-size, which may differ from the bootloader's.
          maxDownloadSize = parseDeviceNumber(await client.getvar('max-download-size'));
          break;
        case 'reboot-bootloader':
          await runStep(plan, client, step, ['reboot', 'bootloader'], client.timeouts.commandMs);
          await expectMode(client, options.profile, 'bootloader');
          maxDownloadSize = parseDeviceNumber(await client.getvar('max-download-size'));
          break;
        case 'erase':
          await runStep(plan, client, step, ['erase', step.target], client.timeouts.commandMs);
          break;
        case 'set-active':
          if (step.slot === 'other') throw new Error('executeFastbootPlan: the plan\'s slots are not resolved');
          await runStep(plan, client, step, ['set_active', step.slot], client.timeouts.commandMs);
          break;
        case 'reboot':
          await runStep(plan, client, step, ['reboot'], client.timeouts.commandMs);
          break;
      }
      progress('done');
    }

    if (!plan.reboot) await checkReadback(plan, client, readback);
    return readback;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/**
 * Flashes one image, split into sparse parts when it is larger than
 * max-download-size. Returns the size the image fills on the partition:
 * split parts are sparse images of whole blocks, so the last block counts whole.
 */
async function flashImage(
  plan: FlashPlan,
  client: FastbootClient,
  step: Extract<FlashStep, { kind: 'flash' }>,
  maxDownloadSize: number | undefined,
  workDir: string,
  progress: (phase: 'start' | 'done', part?: FastbootProgressEvent['part']) => void,
): Promise<number> {
  const parts = await downloadParts(step.image, maxDownloadSize, workDir);
  for (const [index, part] of parts.entries()) {
    const counter = parts.length > 1 ? { number: index + 1, count: parts.length } : undefined;
    if (counter) progress('start', counter);
    const timeoutMs = client.timeouts.transferBaseMs + Math.ceil(step.image.fileSize / (1024 * 1024)) * client.timeouts.transferPerMiBMs;
    const result = await client.run(['flash', step.target, part], timeoutMs);
    if (!result.ok) throw flashFailure(plan, step, result, counter);
    if (counter) progress('done', counter);
  }
  return parts[0] === step.image.path ? step.image.imageSize : (await readSparseImage(parts[0]!)).rawSize;
}

/**
 * Returns the files to send for an image: the image itself when it fits
 * max-download-size, otherwise sparse parts of at most that size written
 * to `workDir`. A sparse image that is too large is expanded first.
 */
export async function downloadParts(image: FlashImage, maxDownloadSize: number | undefined, workDir: string): Promise<string[]> {
  if (maxDownloadSize === undefined || image.fileSize <= maxDownloadSize) return [image.path];

  let rawPath = image.path;
  if (image.sparse) {
    rawPath = path.join(workDir, `${image.partition}.raw`);
    await unsparseImages([image.path], rawPath);
  }
  const stem = path.join(workDir, `${image.partition}-sparse${path.extname(image.file) || '.img'}`);
  const parts = await writeSparseImage(rawPath, stem, { maxFileSize: maxDownloadSize });
  if (rawPath !== image.path) await rm(rawPath, { force: true });
  return parts;
}

/** Builds the FLASH_FAILED error for a failed flash: rejected by the device, or interrupted in transfer. */
function flashFailure(plan: FlashPlan, step: Extract<FlashStep, { kind: 'flash' }>, result: FastbootRun, part?: { number: number; count: number }): QwamosError {
  const what = `${step.image.file}${part ? ` (part ${part.number} of ${part.count})` : ''}`;
  const rejected = result.failure?.startsWith('remote:') ?? false;
  const untouched = plan.slot?.current !== undefined && step.slot !== undefined && step.slot !== plan.slot.current
    ? ` Slot ${plan.slot.current}, which the device boots now, was not changed.`
    : '';
  const message = rejected
    ? `the device rejected flashing ${step.target} with ${what}: ${result.failure}.${untouched}`
    : `the transfer of ${what} to partition ${step.target} was interrupted: ${result.failure}. ${step.target} may hold a partial image; check the connection and run flash again, which writes every partition anew.${untouched}`;
  return new QwamosError('FLASH_FAILED', message, {
    details: result.lines,
    data: { partition: step.target, file: step.image.file, part, interrupted: !rejected, timedOut: result.timedOut },
  });
}

async function runStep(plan: FlashPlan, client: FastbootClient, step: FlashStep, args: string[], timeoutMs: number): Promise<void> {
  const result = await client.run(args, timeoutMs);
  if (result.ok) return;
  throw new QwamosError('FLASH_FAILED', `fastboot ${args.join(' ')} failed on ${client.serial ?? 'the device'}: ${result.failure}`, {
    details: result.lines,
    data: { step: step.kind, device: plan.device, timedOut: result.timedOut },
  });
}

/**
 * Waits for the device to respond in `mode` after a reboot and checks its
 * product again, so a different phone that appears at the same address is
 * never written.
 */
async function expectMode(client: FastbootClient, profile: DeviceProfile, mode: 'bootloader' | 'fastbootd'): Promise<void> {
  const userspace = await client.getvar('is-userspace', client.timeouts.rebootMs);
  const inFastbootd = userspace === 'yes';
  if (inFastbootd !== (mode === 'fastbootd')) {
    throw new QwamosError('FLASH_FAILED', `after rebooting into ${mode}, the device reports is-userspace: ${userspace ?? '(no response)'}; it is not in ${mode}, so flashing stopped`);
  }
  const product = (await client.getvar('product')) ?? '(no response)';
  const check = productResult(profile, product);
  if (!check.ok) throw new QwamosError('FLASH_FAILED', `after rebooting into ${mode}: ${check.message}`);
}

/** Reads a logical partition's size in fastbootd: fastboot resized it to the flashed image, so the two must match. */
async function readLogicalSize(client: FastbootClient, target: string, flashedSize: number): Promise<ReadbackEntry> {
  const value = await client.getvar(`partition-size:${target}`);
  return { variable: `partition-size:${target}`, value, expected: String(flashedSize), ok: parseDeviceNumber(value) === flashedSize };
}

/**
 * Reads back what the bootloader can report after flashing: the current
 * slot (the slot set_active chose, or unchanged with --slot all) and each
 * physical target's partition size. Throws FLASH_FAILED when the current
 * slot or a logical partition size differs from the plan, before any reboot.
 */
async function checkReadback(plan: FlashPlan, client: FastbootClient, readback: ReadbackEntry[]): Promise<void> {
  if (plan.slot) {
    const value = await client.getvar('current-slot');
    const expected = plan.slot.setActive ?? plan.slot.current;
    readback.push({ variable: 'current-slot', value, expected, ok: expected === undefined || parseSlot(value) === expected });
  }
  for (const step of plan.steps) {
    if (step.kind !== 'flash' || step.mode !== 'bootloader') continue;
    const value = await client.getvar(`partition-size:${step.target}`);
    const size = parseDeviceNumber(value);
    // A bootloader may take avb_custom_key without reporting it as a partition.
    const unreported = size === undefined && step.target === AVB_CUSTOM_KEY_PARTITION;
    readback.push({ variable: `partition-size:${step.target}`, value, ok: unreported || (size !== undefined && size >= step.image.imageSize) });
  }

  const wrong = readback.filter((entry) => !entry.ok);
  if (wrong.length > 0) {
    const listed = wrong.map((entry) => `${entry.variable} is ${entry.value ?? '(no response)'}${entry.expected === undefined ? '' : `, expected ${entry.expected}`}`);
    throw new QwamosError('FLASH_FAILED', `read back after flashing does not match the plan: ${listed.join('; ')}; the device was not rebooted, so inspect it with fastboot getvar`, {
      data: { readback },
    });
  }
}
