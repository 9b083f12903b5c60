/**
 * `qwamos-build flash` without the command line: builds the plan, runs
 * every check, and only when all pass (or `--force` covers the failures)
 * writes the phone through fastboot or heimdall.
 *
 * A dry run builds the plan and runs the checks that need no device. When
 * a device is named (a serial or a network address) it also runs the
 * read-only fastboot checks (getvar only), which resolves `--slot other`.
 * It never writes, and for heimdall it never contacts the phone, because
 * reading the PIT opens a Download mode session.
 */
import { isQwamosError } from '../core/errors.js';
import type { DeviceProfile } from '../pipeline/profiles.js';
import { verifyBuildOutput } from '../signing/verify-build.js';
import {
  checkAvbCustomKey, checkBuildOutput, checkFailure, checkFastbootDevice, checkFastbootMode, checkFastbootPartitionSizes, checkResult,
  enforceChecks, selectFastbootDevice, type CheckResult, type VerifyBuild,
} from './flash-checks.js';
import {
  DEFAULT_FASTBOOT_TIMEOUTS, executeFastbootPlan, FastbootClient,
  type FastbootProgressEvent, type FastbootTimeouts, type ReadbackEntry,
} from './flash-fastboot.js';
import { DEFAULT_HEIMDALL_TIMEOUTS, HeimdallClient, heimdallFlashArgs, type HeimdallProgressEvent, type HeimdallTimeouts } from './flash-heimdall.js';
import { defaultFlashLogPath, FlashLog } from './flash-log.js';
import { buildFlashPlan, resolvePlanSlots, type FlashPlan, type SlotChoice } from './flash-plan.js';

export interface FlashOptions {
  /** Build output folder. */
  dir: string;
  profile: DeviceProfile;
  slot?: SlotChoice;
  /** Partitions to erase after flashing, by their name on the device. */
  erase?: string[];
  /** Erase userdata and metadata. */
  wipe?: boolean;
  /** Reboot at the end; default true. */
  reboot?: boolean;
  /** Skip the forceable checks (verify, unlocked); never the product, size or checksum checks. */
  force?: boolean;
  dryRun?: boolean;
  /** fastboot's -s: a USB serial number, or tcp:HOST[:PORT] for a network device. */
  serial?: string;
  /** Session log; default DIR/logs/flash-TIME.log. */
  logFile?: string;
  /** Build verification; default verifyBuildOutput from signing/verify-build.ts. */
  verifyBuild?: VerifyBuild;
  fastbootTimeouts?: Partial<FastbootTimeouts>;
  heimdallTimeouts?: Partial<HeimdallTimeouts>;
  onProgress?: (event: FlashProgressEvent) => void;
}

export type FlashProgressEvent =
  | { tool: 'fastboot'; event: FastbootProgressEvent }
  | { tool: 'heimdall'; event: HeimdallProgressEvent };

export interface FlashResult {
  plan: FlashPlan;
  checks: CheckResult[];
  /** True when the phone was written. */
  flashed: boolean;
  /** Values read from the device after flashing (fastboot only). */
  readback: ReadbackEntry[];
  /** The session log, when a device was contacted. */
  logFile?: string;
  /** The `heimdall flash` argv of a heimdall plan. */
  heimdallArgs?: string[];
}

/** Flashes a build, or with `dryRun` plans and checks it; see the module comment. */
export async function flashBuild(options: FlashOptions): Promise<FlashResult> {
  const plan = await buildFlashPlan(options.profile, options.dir, {
    slot: options.slot,
    erase: options.erase,
    wipe: options.wipe,
    reboot: options.reboot,
  });
  const buildChecks = [
    ...await checkBuildOutput(plan, options.verifyBuild ?? verifyBuildOutput),
    ...await checkAvbCustomKey(plan, options.profile),
  ];

  if (plan.method === 'heimdall') return flashWithHeimdall(plan, buildChecks, options);
  if (options.dryRun && options.serial === undefined) {
    return { plan, checks: markForced(buildChecks, options.force), flashed: false, readback: [] };
  }
  return flashWithFastboot(plan, buildChecks, options);
}

async function flashWithFastboot(offlinePlan: FlashPlan, buildChecks: CheckResult[], options: FlashOptions): Promise<FlashResult> {
  const log = await FlashLog.open(options.logFile ?? defaultFlashLogPath(options.dir), `qwamos-build flash ${options.dryRun ? '--dry-run ' : ''}${options.dir} --device ${options.profile.id}`);
  const timeouts = { ...DEFAULT_FASTBOOT_TIMEOUTS, ...options.fastbootTimeouts };
  let plan = offlinePlan;

  // Without a device in fastboot mode no other device check can run, so a failed mode check stops here.
  const connection = await connectFastboot(options.serial, log, timeouts);
  if (!connection.client) throw checkFailure([...buildChecks, connection.mode]);
  const client = connection.client;
  const serial = connection.serial;
  const mode = await checkFastbootMode(client, serial).catch((error: unknown) => noResponseCheck(error, serial));
  if (!mode.ok || mode.product === undefined) throw checkFailure([...buildChecks, mode]);

  const facts = await checkFastbootDevice(options.profile, client, mode.product);
  if (plan.slot && facts.currentSlot) plan = resolvePlanSlots(plan, facts.currentSlot);
  const sizes = await checkFastbootPartitionSizes(plan, client);
  const checks = [...buildChecks, mode, ...facts.results, ...sizes];

  if (options.dryRun) return { plan, checks: markForced(checks, options.force), flashed: false, readback: [], logFile: log.path };

  const enforced = enforceChecks(checks, options.force ?? false);
  await log.note(`all checks passed; flashing ${plan.images.map((image) => image.file).join(', ')} in ${plan.steps.length} steps`);
  const readback = await executeFastbootPlan(plan, client, {
    profile: options.profile,
    maxDownloadSize: facts.maxDownloadSize,
    onProgress: (event) => options.onProgress?.({ tool: 'fastboot', event }),
  });
  await log.note(`finished: ${readback.map((entry) => `${entry.variable}=${entry.value ?? '(no response)'}`).join(' ')}`);
  return { plan, checks: enforced, flashed: true, readback, logFile: log.path };
}

/**
 * Finds the device. A network address is used as given, because `fastboot
 * devices` lists USB devices only. A USB device must be listed, and be the
 * only one unless `serial` names it.
 */
async function connectFastboot(
  serial: string | undefined,
  log: FlashLog,
  timeouts: FastbootTimeouts,
): Promise<{ client: FastbootClient; serial: string; mode: CheckResult } | { client?: undefined; mode: CheckResult }> {
  if (serial !== undefined && /^(tcp|udp):/.test(serial)) {
    return { client: new FastbootClient(serial, log, timeouts), serial, mode: checkResult('mode', true, `using network device ${serial}`) };
  }
  const listed = await new FastbootClient(undefined, log, timeouts).devices();
  const selected = selectFastbootDevice(listed, serial);
  if (!selected.ok || selected.serial === undefined) return { mode: selected };
  return { client: new FastbootClient(selected.serial, log, timeouts), serial: selected.serial, mode: selected };
}

/** Turns "no device responded" into a failed mode check; other errors pass through. */
function noResponseCheck(error: unknown, serial: string): CheckResult & { product?: string } {
  if (!isQwamosError(error, 'FLASH_FAILED')) throw error;
  return checkResult('mode', false, `no fastboot device responded at ${serial} (${error.message}); boot the phone into the bootloader (fastboot mode) and check --serial or --transport`);
}

async function flashWithHeimdall(plan: FlashPlan, buildChecks: CheckResult[], options: FlashOptions): Promise<FlashResult> {
  const heimdallArgs = heimdallFlashArgs(plan, { resume: true });
  if (options.dryRun) return { plan, checks: markForced(buildChecks, options.force), flashed: false, readback: [], heimdallArgs };

  // The build checks come first: reading the PIT opens a Download mode session on the phone.
  const enforcedBuild = enforceChecks(buildChecks, options.force ?? false);
  const log = await FlashLog.open(options.logFile ?? defaultFlashLogPath(options.dir), `qwamos-build flash ${options.dir} --device ${options.profile.id}`);
  const client = new HeimdallClient(log, { ...DEFAULT_HEIMDALL_TIMEOUTS, ...options.heimdallTimeouts });

  const downloadMode = await client.checkDownloadMode();
  enforceChecks([...enforcedBuild, downloadMode], options.force ?? false);
  const pit = await client.checkPit(plan);
  const checks = enforceChecks([...enforcedBuild, downloadMode, pit], options.force ?? false);

  await log.note(`all checks passed; heimdall ${heimdallArgs.join(' ')}`);
  await client.flash(plan, (event) => options.onProgress?.({ tool: 'heimdall', event }));
  await log.note('finished');
  return { plan, checks, flashed: true, readback: [], logFile: log.path, heimdallArgs };
}

/** Marks failed forceable checks as forced when `force` is set, without throwing (for dry runs). */
function markForced(results: CheckResult[], force: boolean | undefined): CheckResult[] {
  return results.map((result) => (!result.ok && result.forceable && force ? { ...result, forced: true } : result));
}

/** Returns true when a dry run's checks would let the flash go ahead. */
export function checksPass(results: readonly CheckResult[]): boolean {
  return results.every((result) => result.ok || result.forced === true);
}
