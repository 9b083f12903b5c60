/**
 * The checks `qwamos-build flash` runs before it writes anything. Each
 * check has a name that its failure message starts with. `--force` skips
 * only build verification and the unlock state, which some bootloaders do
 * not report. Every other check always runs, among them product, size,
 * checksum, mode and slots.
 */
import { readFile } from 'node:fs/promises';
import { isQwamosError, QwamosError } from '../core/errors.js';
import type { DeviceProfile } from '../pipeline/profiles.js';
import { decodeAvbPublicKey, findAvbAlgorithm } from '../signing/avb-key.js';
import { parseVbmeta } from '../signing/avb-vbmeta.js';
import { AVB_CUSTOM_KEY_PARTITION, type FlashPlan, type Slot } from './flash-plan.js';

export type CheckName =
  /** build.json was written for the device being flashed. */
  | 'build-device'
  /** Each file's SHA-256 and size match build.json. */
  | 'checksum'
  /** Each image fits the partition size in the profile. */
  | 'profile-size'
  /** The build output passes verification (signatures, digests). */
  | 'verify'
  /** A device is in fastboot mode (the bootloader, not fastbootd), and only one unless a serial picks it. */
  | 'mode'
  /** `getvar product` is one of the profile's codenames. */
  | 'product'
  /** `getvar unlocked` is yes. */
  | 'unlocked'
  /** The device's slot count matches the profile's A/B setting. */
  | 'slots'
  /** Each image fits `getvar partition-size:PART` (super for logical partitions). */
  | 'partition-size'
  /** `heimdall detect` finds a device in Download mode. */
  | 'download-mode'
  /** The device's partition table (PIT) lists every partition the plan writes. */
  | 'pit'
  /** avb_custom_key.bin is a valid AVB public key blob of the profile's key size, and vbmeta.img is signed with it. */
  | 'avb-key';

export interface CheckResult {
  name: CheckName;
  ok: boolean;
  /** Description of the comparison, or for a failure of what failed and what to do. */
  message: string;
  /** `--force` turns this failure into a warning. */
  forceable: boolean;
  /** Failed, but skipped because of `--force`. */
  forced?: boolean;
}

/** Build verification, `verifyBuildOutput` from signing/verify-build.ts unless a caller gives another. */
export type VerifyBuild = (dir: string) => Promise<{ ok: boolean; failures: string[] }>;

/** The read-only fastboot queries the device checks need. */
export interface FastbootQueries {
  /** Runs `getvar NAME`; returns undefined when the device responds FAIL. */
  getvar(name: string): Promise<string | undefined>;
}

const FORCEABLE: ReadonlySet<CheckName> = new Set(['verify', 'unlocked']);

/** Builds a check result; a failure's message starts with "check 'NAME' failed:". */
export function checkResult(name: CheckName, ok: boolean, message: string): CheckResult {
  return { name, ok, message: ok ? message : `check '${name}' failed: ${message}`, forceable: FORCEABLE.has(name) };
}

/** Checks the build output folder against its record and the profile; touches no device. */
export async function checkBuildOutput(plan: FlashPlan, verifyBuild: VerifyBuild): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const recordFile = `${plan.dir}/build.json`;

  if (plan.record.device === plan.device) {
    results.push(checkResult('build-device', true, `${recordFile} was built for ${plan.device}`));
  } else {
    const found = plan.record.device === undefined ? 'names no device' : `was built for ${plan.record.device}`;
    results.push(checkResult('build-device', false, `${recordFile} ${found}, not for ${plan.device}; flash a build of ${plan.device} or pick the device the build is for`));
  }

  for (const image of plan.images) {
    results.push(checksumResult(plan, image.file, image.sha256, image.fileSize));
    if (image.profileSize !== undefined) {
      const fits = image.imageSize <= image.profileSize;
      results.push(checkResult('profile-size', fits, fits
        ? `${image.file} (${image.imageSize} bytes) fits ${image.partition} (${image.profileSize} bytes in the profile)`
        : `${image.file} is ${image.imageSize} bytes, larger than partition ${image.partition} (${image.profileSize} bytes in device-profiles/${plan.device}.yaml); make the image smaller`));
    }
  }

  // The verifier rejects a folder it cannot read by throwing; that message carries its own advice.
  const verification = await verifyBuild(plan.dir).catch((error: unknown) => {
    if (!isQwamosError(error)) throw error;
    return { ok: false, failures: [error.message], thrown: true };
  });
  const advice = 'thrown' in verification ? '' : '; rebuild and sign it again';
  results.push(checkResult('verify', verification.ok, verification.ok
    ? `${plan.dir} passes verification`
    : `${plan.dir} does not pass verification: ${verification.failures.join('; ')}${advice}`));
  return results;
}

/**
 * Checks the key a re-lockable bootloader will trust: avb_custom_key.bin
 * must be a well-formed AVB public key blob with the key size of the
 * profile's algorithm, and vbmeta.img must carry the same public key.
 * Otherwise a phone re-locked with this key would refuse to boot the build.
 * Returns no result when the plan flashes no avb_custom_key.
 */
export async function checkAvbCustomKey(plan: FlashPlan, profile: DeviceProfile): Promise<CheckResult[]> {
  const key = plan.images.find((image) => image.partition === AVB_CUSTOM_KEY_PARTITION);
  const vbmeta = plan.images.find((image) => image.partition === 'vbmeta');
  if (!key || !profile.android) return [];

  const algorithm = findAvbAlgorithm(profile.android.avb.algorithm);
  const blob = await readFile(key.path);
  let keyBits: number;
  try {
    keyBits = decodeAvbPublicKey(blob).keyBits;
  } catch (error) {
    if (!isQwamosError(error)) throw error;
    return [checkResult('avb-key', false, `${key.file} is not a valid AVB public key blob (${error.message}); write it with 'qwamos-build avb extract_public_key'`)];
  }
  if (keyBits !== algorithm.keyBits) {
    return [checkResult('avb-key', false, `${key.file} holds a ${keyBits}-bit key, but ${profile.id} signs with ${algorithm.name} (${algorithm.keyBits} bits); rebuild with the profile's key`)];
  }
  if (!vbmeta) {
    return [checkResult('avb-key', true, `${key.file} is a ${keyBits}-bit AVB public key blob`)];
  }

  let signedWith: Buffer;
  try {
    signedWith = parseVbmeta(await readFile(vbmeta.path)).publicKey;
  } catch (error) {
    if (!isQwamosError(error)) throw error;
    return [checkResult('avb-key', false, `${vbmeta.file} cannot be parsed (${error.message}), so its signing key cannot be compared with ${key.file}`)];
  }
  const same = signedWith.equals(blob);
  return [checkResult('avb-key', same, same
    ? `${vbmeta.file} is signed with the key in ${key.file}`
    : `${vbmeta.file} is not signed with the key in ${key.file}; a bootloader re-locked with that key would not boot this build, so rebuild both with one key`)];
}

function checksumResult(plan: FlashPlan, file: string, sha256: string, size: number): CheckResult {
  const recorded = plan.record.sha256.get(file);
  if (recorded === undefined) {
    return checkResult('checksum', false, `${file} has no entry in ${plan.dir}/build.json, so its SHA-256 cannot be checked; rebuild so the record lists it`);
  }
  if (recorded !== sha256) {
    return checkResult('checksum', false, `${file} has SHA-256 ${sha256}, but ${plan.dir}/build.json records ${recorded}; the file changed after the build, so rebuild it`);
  }
  const recordedSize = plan.record.sizes.get(file);
  if (recordedSize !== size) {
    return checkResult('checksum', false, `${file} is ${size} bytes, but ${plan.dir}/build.json records ${recordedSize}; rebuild it`);
  }
  return checkResult('checksum', true, `${file} matches its SHA-256 in build.json`);
}

/** Picks the USB device to flash from `fastboot devices` output, or explains why none can be picked. */
export function selectFastbootDevice(listed: readonly string[], requested: string | undefined): CheckResult & { serial?: string } {
  if (requested !== undefined) {
    if (listed.includes(requested)) return { ...checkResult('mode', true, `device ${requested} is in fastboot mode`), serial: requested };
    const others = listed.length === 0 ? 'none are listed' : `listed: ${listed.join(', ')}`;
    return checkResult('mode', false, `no device with serial ${requested} is in fastboot mode (${others}); boot it into the bootloader or fix --serial`);
  }
  if (listed.length === 1) return { ...checkResult('mode', true, `device ${listed[0]} is in fastboot mode`), serial: listed[0] };
  if (listed.length === 0) {
    return checkResult('mode', false, "no device is in fastboot mode ('fastboot devices' lists none); boot the phone into the bootloader and connect it, or give --transport tcp:HOST:PORT");
  }
  return checkResult('mode', false, `${listed.length} devices are in fastboot mode (${listed.join(', ')}); pick one with --serial`);
}

/** Parses `fastboot devices` output: one `SERIAL<tab>fastboot` line per device. */
export function parseFastbootDevices(output: string): string[] {
  return output.split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields.length >= 2 && fields[1] === 'fastboot')
    .map((fields) => fields[0]!);
}

/** Checks that the device responds in the bootloader, not in fastbootd, and reports a product. */
export async function checkFastbootMode(device: FastbootQueries, serial: string): Promise<CheckResult & { product?: string }> {
  const product = await device.getvar('product');
  if (product === undefined) {
    return checkResult('mode', false, `the device at ${serial} responds, but not to 'getvar product'; it may not be in fastboot mode`);
  }
  const userspace = await device.getvar('is-userspace');
  if (userspace === 'yes') {
    return { ...checkResult('mode', false, `the device at ${serial} is in fastbootd (userspace fastboot); the plan starts in the bootloader, so run 'fastboot -s ${serial} reboot bootloader' first`), product };
  }
  return { ...checkResult('mode', true, `device ${serial} is in the bootloader's fastboot mode`), product };
}

export interface FastbootDeviceFacts {
  results: CheckResult[];
  currentSlot?: Slot;
  /** Bytes fastboot may download at once, from `getvar max-download-size`. */
  maxDownloadSize?: number;
}

/**
 * Runs the device checks that need no resolved slot (product, unlock
 * state, slots) and reads the current slot and max-download-size. The size
 * check follows in `checkFastbootPartitionSizes`, once the plan's slots are
 * resolved against the current slot.
 */
export async function checkFastbootDevice(profile: DeviceProfile, device: FastbootQueries, product: string): Promise<FastbootDeviceFacts> {
  const results: CheckResult[] = [productResult(profile, product)];

  const unlocked = await device.getvar('unlocked');
  results.push(checkResult('unlocked', unlocked === 'yes', unlocked === 'yes'
    ? 'the bootloader is unlocked'
    : `the bootloader reports unlocked: ${unlocked ?? '(no response)'}; unlock it first (fastboot flashing unlock, which erases user data), or use --force if this bootloader does not report its state`));

  const slotCount = parseDeviceNumber(await device.getvar('slot-count'));
  const currentText = await device.getvar('current-slot');
  const currentSlot = parseSlot(currentText);
  const ab = profile.android?.ab ?? false;
  if (ab) {
    const ok = slotCount !== undefined && slotCount >= 2 && currentSlot !== undefined;
    results.push(checkResult('slots', ok, ok
      ? `the device has ${slotCount} slots and runs slot ${currentSlot}`
      : `${profile.id} is an A/B device, but the device reports slot-count ${slotCount ?? '(no response)'} and current-slot ${currentText ?? '(no response)'}; check that --device matches the phone`));
  } else {
    const ok = slotCount === undefined || slotCount < 2;
    results.push(checkResult('slots', ok, ok
      ? 'the device has no A/B slots, as the profile says'
      : `${profile.id} has no A/B slots, but the device reports slot-count ${slotCount}; check that --device matches the phone`));
  }

  const maxDownloadSize = parseDeviceNumber(await device.getvar('max-download-size'));
  return { results, currentSlot, maxDownloadSize };
}

/** Checks `getvar product` against the profile's codenames. */
export function productResult(profile: DeviceProfile, product: string): CheckResult {
  const codenames = profile.codenames ?? [];
  if (codenames.includes(product)) {
    return checkResult('product', true, `the device reports product ${product}, a codename of ${profile.id}`);
  }
  if (codenames.length === 0) {
    return checkResult('product', false, `device-profiles/${profile.id}.yaml lists no codenames, so the device (product ${product}) cannot be matched; add codenames to the profile`);
  }
  return checkResult('product', false, `the device reports product '${product}', but ${profile.id} expects ${codenames.join(' or ')}; connect a ${profile.name} or pick the profile of this phone with --device`);
}

/**
 * Checks each bootloader-mode flash target against `getvar partition-size`.
 * Logical partitions are unknown to the bootloader, so they are checked
 * against the super partition, and fastbootd decides the final fit when
 * fastboot resizes them (before any byte of them is written).
 */
export async function checkFastbootPartitionSizes(plan: FlashPlan, device: FastbootQueries): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const step of plan.steps) {
    if (step.kind !== 'flash' || step.mode !== 'bootloader') continue;
    const size = parseDeviceNumber(await device.getvar(`partition-size:${step.target}`));
    if (size === undefined && step.target === AVB_CUSTOM_KEY_PARTITION) {
      // Bootloaders take the key through a flash command without listing it as a partition; the avb-key check covers its format.
      results.push(checkResult('partition-size', true, `the device does not report partition-size:${AVB_CUSTOM_KEY_PARTITION}; ${step.image.file} was checked as an AVB key blob instead`));
      continue;
    }
    results.push(sizeResult(step.image.file, step.image.imageSize, step.target, step.target, size));
  }

  const logical = plan.images.filter((image) => image.logical);
  if (logical.length > 0) {
    const superName = (await device.getvar('super-partition-name')) ?? 'super';
    const superSize = parseDeviceNumber(await device.getvar(`partition-size:${superName}`));
    const copies = plan.slot?.targets.length ?? 1;
    const total = logical.reduce((sum, image) => sum + image.imageSize * copies, 0);
    const names = logical.map((image) => image.file).join(', ');
    results.push(sizeResult(names, total, superName, `${superName} (logical partitions)`, superSize));
  }
  return results;
}

function sizeResult(file: string, imageSize: number, partition: string, target: string, partitionSize: number | undefined): CheckResult {
  if (partitionSize === undefined) {
    return checkResult('partition-size', false, `the device does not report partition-size:${partition}, so ${file} (${imageSize} bytes) cannot be checked against it; the partition may not exist on this device`);
  }
  const fits = imageSize <= partitionSize;
  return checkResult('partition-size', fits, fits
    ? `${file} (${imageSize} bytes) fits ${target} (${partitionSize} bytes)`
    : `${file} is ${imageSize} bytes, but partition ${target} on the device is ${partitionSize} bytes; the image does not fit, so shrink it or check the profile`);
}

/** Parses a fastboot number: decimal or 0x hex, as devices report sizes and counts. */
export function parseDeviceNumber(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(trimmed)) return undefined;
  const value = Number(trimmed.toLowerCase());
  return Number.isSafeInteger(value) ? value : undefined;
}

/** Parses `getvar current-slot`: a or b, some devices prefix an underscore. */
export function parseSlot(text: string | undefined): Slot | undefined {
  const name = text?.trim().replace(/^_/, '');
  return name === 'a' || name === 'b' ? name : undefined;
}

/**
 * Throws FLASH_CHECK_FAILED when a check failed that `force` does not
 * cover; otherwise returns the results with forceable failures marked forced.
 */
export function enforceChecks(results: CheckResult[], force: boolean): CheckResult[] {
  const marked = results.map((result) => (!result.ok && result.forceable && force ? { ...result, forced: true } : result));
  if (marked.every((result) => result.ok || result.forced)) return marked;
  throw checkFailure(marked);
}

/**
 * Returns the FLASH_CHECK_FAILED error for the failed, unforced checks in
 * `results`. The message starts with the first failure and names the
 * others; `details` lists every failure message.
 */
export function checkFailure(results: CheckResult[]): QwamosError {
  const blocking = results.filter((result) => !result.ok && !result.forced);
  const first = blocking[0];
  if (!first) throw new Error('checkFailure: no failed check');

  const more = blocking.length > 1 ? ` (${blocking.length - 1} more failed: ${blocking.slice(1).map((result) => result.name).join(', ')})` : '';
  const forceHint = blocking.every((result) => result.forceable) ? '; --force skips these checks' : '';
  return new QwamosError('FLASH_CHECK_FAILED', `refusing to flash: ${first.message}${more}${forceHint}`, {
    details: blocking.map((result) => result.message),
    data: { checks: results },
  });
}
