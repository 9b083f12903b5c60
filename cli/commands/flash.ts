/**
 * `qwamos-build flash`: writes a build output folder to a phone with
 * fastboot or heimdall after the checks in deploy/flash-checks.ts pass.
 */
import { QwamosError } from '../../core/errors.js';
import type { CheckResult, VerifyBuild } from '../../deploy/flash-checks.js';
import type { ReadbackEntry } from '../../deploy/flash-fastboot.js';
import { planToJson, readBuildRecord, SLOT_CHOICES, type FlashPlan, type FlashStep, type SlotChoice } from '../../deploy/flash-plan.js';
import { checksPass, flashBuild, type FlashProgressEvent, type FlashResult } from '../../deploy/flash-run.js';
import { loadProfile, PROFILES_DIR } from '../../pipeline/profiles.js';
import { formatTable, parseCommandArgs, printJson, type Command } from '../command.js';

export interface FlashCommandDependencies {
  /** Build verification; default verifyBuildOutput from signing/verify-build.ts. */
  verifyBuild?: VerifyBuild;
  profilesDir?: string;
}

const HELP = `Usage: qwamos-build flash DIR [--device ID] [--slot a|b|all|other]
                          [--transport tcp:HOST[:PORT] | --serial SERIAL]
                          [--erase PARTITION]... [--wipe] [--no-reboot]
                          [--force] [--dry-run] [--log FILE] [--timeout SECONDS] [--json]

Writes the build output folder DIR to a phone: with fastboot for devices
whose profile says flash.method fastboot, with heimdall in Download mode for
Samsung phones. Before anything is written, every check must pass:
  build-device    DIR/build.json was built for the device
  checksum        every image's SHA-256 and size match DIR/build.json
  profile-size    every image fits its partition size in the profile
  verify          the build passes verification (signatures, digests)
  avb-key         avb_custom_key.bin (re-lockable devices) is a valid key
                  blob of the profile's key size and signed vbmeta.img
  mode            a device is in fastboot mode (the bootloader), or for
                  heimdall in Download mode ('heimdall detect')
  product         'getvar product' is one of the profile's codenames
  unlocked        'getvar unlocked' is yes
  slots           the device's slot count matches the profile's A/B setting
  partition-size  every image fits 'getvar partition-size' on the device
  pit             heimdall only: the device's PIT lists every partition
--force skips only verify and unlocked; the other checks always run.
flash writes the custom AVB key but never re-locks the bootloader: run
'fastboot flashing lock' yourself once the build boots.

On A/B devices the build goes to the slot the phone does not run (--slot
other), then set_active makes it the boot slot, so a flash that stops part
way leaves the running slot intact. Logical partitions (system) are written
from fastbootd: the plan reboots into it and back to the bootloader.

Options:
  --device ID         device profile (default: the device in DIR/build.json)
  --slot SLOT         a or b: that slot, then set_active to it; all: both
                      slots, active slot unchanged; other (default): the slot
                      not running now, then set_active to it
  --transport ADDR    network device: tcp:HOST[:PORT] (fastboot's default port 5554)
  --serial SERIAL     USB device to flash when several are in fastboot mode
  --erase PARTITION   erase PARTITION after flashing (repeatable); only the
                      flashed partitions, userdata, metadata and avb_custom_key
  --wipe              erase userdata and metadata: all user data is lost
  --no-reboot         leave the phone in fastboot or Download mode at the end
  --force             flash although the verify or unlocked check failed
  --dry-run           print the plan and the checks; write nothing. With
                      --transport or --serial, fastboot devices are also
                      queried (getvar only)
  --log FILE          session log (default DIR/logs/flash-TIME.log)
  --timeout SECONDS   maximum seconds for each fastboot or heimdall command
                      (default: 15 for queries, 120 for reboots, 60 plus 2 per
                      MiB for transfers)
  --json              print the plan, checks and read-back values as JSON

Exit status: 0 flashed (or dry run with all checks passing), 1 a check or
the flash failed, 2 invalid usage or input.`;

/** Returns the flash command; tests pass their own build verification. */
export function createFlashCommand(dependencies: FlashCommandDependencies = {}): Command {
  return {
    name: ['flash'],
    summary: 'flash a build to a phone with fastboot or heimdall, after safety checks',
    help: HELP,
    run: (argv) => runFlash(argv, dependencies),
  };
}

export const flashCommand = createFlashCommand();

async function runFlash(argv: string[], dependencies: FlashCommandDependencies): Promise<number> {
  const { values, positionals } = parseCommandArgs('flash', argv, {
    device: { type: 'string' },
    slot: { type: 'string' },
    transport: { type: 'string' },
    serial: { type: 'string' },
    erase: { type: 'string', multiple: true },
    wipe: { type: 'boolean', default: false },
    'no-reboot': { type: 'boolean', default: false },
    force: { type: 'boolean', default: false },
    'dry-run': { type: 'boolean', default: false },
    log: { type: 'string' },
    timeout: { type: 'string' },
    json: { type: 'boolean', default: false },
  }, true);

  if (positionals.length !== 1) {
    throw new QwamosError('USAGE', `flash: expected exactly one build output folder, such as 'out/pixel-8' (got ${positionals.length} arguments); run 'qwamos-build flash --help' for the options`);
  }
  const dir = positionals[0]!;
  const slot = parseSlot(values.slot);
  const serial = parseDeviceAddress(values.transport, values.serial);
  const timeoutMs = parseTimeout(values.timeout);
  const deviceId = values.device ?? (await readBuildRecord(dir)).device;
  if (deviceId === undefined) {
    throw new QwamosError('USAGE', `flash: ${dir}/build.json names no device; give --device`);
  }
  const profile = await loadProfile(deviceId, dependencies.profilesDir ?? PROFILES_DIR);

  const result = await flashBuild({
    dir,
    profile,
    slot,
    erase: values.erase,
    wipe: values.wipe,
    reboot: !values['no-reboot'],
    force: values.force,
    dryRun: values['dry-run'],
    serial,
    logFile: values.log,
    verifyBuild: dependencies.verifyBuild,
    fastbootTimeouts: timeoutMs === undefined ? undefined : { commandMs: timeoutMs, rebootMs: timeoutMs, transferBaseMs: timeoutMs, transferPerMiBMs: 0 },
    heimdallTimeouts: timeoutMs === undefined ? undefined : { commandMs: timeoutMs, flashBaseMs: timeoutMs, flashPerMiBMs: 0 },
    onProgress: values.json ? undefined : printProgress,
  });

  const ok = result.flashed || checksPass(result.checks);
  if (values.json) {
    printJson({
      ok,
      dryRun: values['dry-run'],
      flashed: result.flashed,
      plan: planToJson(result.plan),
      checks: result.checks,
      readback: result.readback,
      logFile: result.logFile ?? null,
      ...(result.heimdallArgs ? { heimdallArgs: result.heimdallArgs } : {}),
    });
  } else if (result.flashed) {
    printFlashed(result);
  } else {
    printDryRun(result);
  }
  return ok ? 0 : 1;
}

function parseSlot(text: string | undefined): SlotChoice | undefined {
  if (text === undefined) return undefined;
  if (!(SLOT_CHOICES as readonly string[]).includes(text)) {
    throw new QwamosError('USAGE', `flash: --slot '${text}' is invalid; use a, b, all or other`);
  }
  return text as SlotChoice;
}

function parseDeviceAddress(transport: string | undefined, serial: string | undefined): string | undefined {
  if (transport !== undefined && serial !== undefined) {
    throw new QwamosError('USAGE', 'flash: give either --transport (network device) or --serial (USB device), not both');
  }
  if (transport !== undefined && !/^(tcp|udp):[^:\s]+(:\d{1,5})?$/.test(transport)) {
    throw new QwamosError('USAGE', `flash: --transport '${transport}' is invalid; write tcp:HOST or tcp:HOST:PORT (udp: also works)`);
  }
  return transport ?? serial;
}

function parseTimeout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new QwamosError('USAGE', `flash: --timeout must be a positive number of seconds, got '${text}'`);
  }
  return Math.round(seconds * 1000);
}

/** Prints progress on stderr, so stdout keeps only the result. */
function printProgress(progress: FlashProgressEvent): void {
  if (progress.tool === 'heimdall') {
    const { partition, phase } = progress.event;
    process.stderr.write(`flash: ${phase === 'start' ? 'writing' : 'wrote'} ${partition}\n`);
    return;
  }
  const { index, total, step, phase, part } = progress.event;
  const prefix = `flash: [${index + 1}/${total}]`;
  if (part && phase === 'done') process.stderr.write(`${prefix}   sent part ${part.number} of ${part.count}\n`);
  if (part) return;
  if (phase === 'start') process.stderr.write(`${prefix} ${describeStep(step)}\n`);
  if (phase === 'done' && step.kind === 'flash') process.stderr.write(`${prefix}   wrote ${step.target}\n`);
}

function describeStep(step: FlashStep): string {
  switch (step.kind) {
    case 'flash':
      return `flash ${step.target} < ${step.image.file} (${step.image.fileSize} bytes)`;
    case 'erase':
      return `erase ${step.target}${step.reason === 'wipe' ? ' (--wipe)' : ''}`;
    case 'set-active':
      return `set_active ${step.slot}`;
    case 'reboot-fastboot':
      return 'reboot into fastbootd';
    case 'reboot-bootloader':
      return 'reboot into the bootloader';
    case 'reboot':
      return 'reboot';
  }
}

function printPlan(plan: FlashPlan): void {
  process.stdout.write(`flash plan: ${plan.dir} to ${plan.device} with ${plan.method}\n`);
  if (plan.slot) {
    const current = plan.slot.current ?? 'unknown until a device is queried';
    const active = plan.slot.setActive === undefined ? 'active slot unchanged' : `then set_active ${plan.slot.setActive}`;
    process.stdout.write(`slot: ${plan.slot.choice} (current slot ${current}; flash ${plan.slot.targets.join(' and ')}, ${active})\n`);
  }

  const rows = plan.steps.map((step, index) => [String(index + 1), step.kind, ...planColumns(step)]);
  process.stdout.write(`${formatTable(['step', 'action', 'mode', 'partition', 'file', 'bytes', 'sha256'], rows)}\n`);
  for (const warning of plan.warnings) process.stdout.write(`warning: ${warning}\n`);
}

/** Returns the mode, partition (or slot), file, size and SHA-256 prefix columns of a step. */
function planColumns(step: FlashStep): string[] {
  switch (step.kind) {
    case 'flash':
      return [step.mode, step.target, step.image.file, String(step.image.fileSize), step.image.sha256.slice(0, 16)];
    case 'erase':
      return [step.mode, step.target, '', '', ''];
    case 'set-active':
      return ['', step.slot, '', '', ''];
    default:
      return ['', '', '', '', ''];
  }
}

function checkStatus(check: CheckResult): string {
  if (check.ok) return 'ok';
  return check.forced ? 'forced' : 'FAILED';
}

function printChecks(checks: readonly CheckResult[]): void {
  const rows = checks.map((check) => [checkStatus(check), check.name, check.message]);
  process.stdout.write(`${formatTable(['result', 'check', 'detail'], rows)}\n`);
}

/** Checks that need the phone; a dry run without one cannot run them. */
const DEVICE_CHECKS = ['mode', 'product', 'unlocked', 'slots', 'partition-size'] as const;

function printDryRun(result: FlashResult): void {
  printPlan(result.plan);
  if (result.heimdallArgs) process.stdout.write(`heimdall ${result.heimdallArgs.join(' ')}\n`);
  process.stdout.write('\n');
  printChecks(result.checks);
  const verdict = checksPass(result.checks) ? 'all checks that ran pass' : 'checks failed, so flash would refuse';
  process.stdout.write(`dry run: nothing was written; ${verdict}${result.logFile ? ` (log: ${result.logFile})` : ''}\n`);

  const ran = new Set(result.checks.map((check) => check.name));
  const notRun = DEVICE_CHECKS.filter((name) => !ran.has(name));
  if (notRun.length > 0) process.stdout.write(`not checked without a device: ${notRun.join(', ')}\n`);
}

function printFlashed(result: FlashResult): void {
  for (const check of result.checks.filter((entry) => entry.forced)) process.stdout.write(`warning: forced past ${check.message}\n`);
  if (result.readback.length > 0) {
    const rows = result.readback.map((entry: ReadbackEntry) => [entry.variable, entry.value ?? '(no response)', entry.expected ?? '', entry.ok ? 'ok' : 'MISMATCH']);
    process.stdout.write(`${formatTable(['read back', 'value', 'expected', 'result'], rows)}\n`);
  }
  process.stdout.write(`flashed ${result.plan.dir} to ${result.plan.device}; log: ${result.logFile}\n`);
}
