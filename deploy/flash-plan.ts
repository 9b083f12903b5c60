/**
 * The flash plan: from a device profile and a build output folder, the
 * ordered list of what `qwamos-build flash` does to a phone. Building a plan
 * reads files but touches no device, so `flash --dry-run` shows it as is.
 *
 * Order of a fastboot plan, and why:
 * 1. In the bootloader, every physical partition image goes to the target
 *    slot, then `avb_custom_key` (unslotted) where the profile marks the
 *    bootloader as re-lockable with a custom key.
 * 2. Logical partitions (inside `super`) are written from fastbootd, the
 *    userspace fastboot, because a bootloader does not know them: `reboot
 *    fastboot`, flash them, `reboot bootloader`.
 * 3. Erases the user asked for (`--erase`, `--wipe`), then `set_active`.
 * 4. Reboot, unless the user asked for none.
 * With the default slot `other`, every write goes to the inactive slot and
 * `set_active` comes last, so a run that stops early leaves the slot the
 * phone boots from untouched.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { isSparseImage, readSparseImage } from '../images/sparse-read.js';
import type { DeviceProfile, PartitionSpec } from '../pipeline/profiles.js';

export type Slot = 'a' | 'b';
/** `--slot`: one slot, both, or the one the phone does not boot from now. */
export type SlotChoice = Slot | 'all' | 'other';
export const SLOT_CHOICES: readonly SlotChoice[] = ['a', 'b', 'all', 'other'];

/** Device mode a step runs in: the bootloader's fastboot, fastbootd (userspace fastboot), or Samsung's Download mode. */
export type StepMode = 'bootloader' | 'fastbootd' | 'download';

/** The AVB public key blob that a re-lockable bootloader takes as its custom root of trust. */
export const AVB_CUSTOM_KEY_FILE = 'avb_custom_key.bin';
export const AVB_CUSTOM_KEY_PARTITION = 'avb_custom_key';
export const BUILD_RECORD_FILE = 'build.json';

/**
 * Partitions that `--wipe` erases, which removes all user data.
 * NOTE: `fastboot -w` also formats them; this plan only erases them and
 * relies on the device formatting them at the next boot (fstab's
 * `formattable` flag). No real device has checked that here.
 */
export const WIPE_PARTITIONS = ['userdata', 'metadata'] as const;

/** One image file of the build and the partition it goes to. */
export interface FlashImage {
  /** Partition name in the profile, without a slot suffix (boot, system, avb_custom_key). */
  partition: string;
  /** File name inside the build output folder. */
  file: string;
  /** The build output folder joined with `file`. */
  path: string;
  /** File size in bytes. */
  fileSize: number;
  /** Bytes the image fills on the partition: the expanded size of a sparse image, else the file size. */
  imageSize: number;
  sparse: boolean;
  /** SHA-256 of the file as read now, lowercase hex. */
  sha256: string;
  /** Partition size in the profile, in bytes; undefined for avb_custom_key. */
  profileSize?: number;
  /** Dynamic partition inside super, written from fastbootd. */
  logical: boolean;
  /** Has _a and _b copies on this device. */
  slotted: boolean;
  /** Samsung PIT name, for heimdall. */
  pitName?: string;
}

/** The slot a slotted write goes to; `other` until the device reports its current slot. */
export type SlotTarget = Slot | 'other';

export type FlashStep =
  | { kind: 'flash'; mode: StepMode; image: FlashImage; slot?: SlotTarget; target: string }
  | { kind: 'reboot-fastboot' }
  | { kind: 'reboot-bootloader' }
  | { kind: 'erase'; mode: StepMode; target: string; reason: 'requested' | 'wipe' }
  | { kind: 'set-active'; slot: SlotTarget }
  | { kind: 'reboot' };

export interface FlashPlanOptions {
  /** A/B devices only; default `other`. */
  slot?: SlotChoice;
  /** The slot the device runs now; resolves `other`. Unknown in an offline dry run. */
  currentSlot?: Slot;
  /** Partitions to erase after flashing, by their name on the device (userdata, boot_b). */
  erase?: string[];
  /** Erase userdata and metadata. */
  wipe?: boolean;
  /** Reboot at the end; default true. */
  reboot?: boolean;
}

export interface FlashPlan {
  device: string;
  method: 'fastboot' | 'heimdall';
  dir: string;
  /** Slot handling on A/B devices; undefined on devices without slots. */
  slot?: { choice: SlotChoice; current?: Slot; targets: SlotTarget[]; setActive?: SlotTarget };
  images: FlashImage[];
  steps: FlashStep[];
  /** The build record's device id and its SHA-256 per file name. */
  record: BuildRecordSummary;
  /** Facts the user should know before flashing, such as unconfirmed profile entries. */
  warnings: string[];
  reboot: boolean;
}

export interface BuildRecordSummary {
  device?: string;
  sha256: Map<string, string>;
  sizes: Map<string, number>;
}

/**
 * Builds the plan for flashing `dir` to a device of `profile`. Rejects a
 * profile without flash facts, a missing build record or image, a slot
 * request on a device without slots, and an erase of a partition outside
 * the allowed set.
 */
export async function buildFlashPlan(profile: DeviceProfile, dir: string, options: FlashPlanOptions = {}): Promise<FlashPlan> {
  const android = profile.android;
  const method = profile.flash.method;
  if (method !== 'fastboot' && method !== 'heimdall') {
    throw new QwamosError('INPUT_INVALID', `device ${profile.id} is flashed with '${method}', not with fastboot or heimdall; use 'qwamos-build boot-test' for QEMU targets`);
  }
  if (!android) {
    throw new QwamosError('INPUT_INVALID', `device profile ${profile.id} has no android section, so it names no partitions to flash; add android.partitions to device-profiles/${profile.id}.yaml`);
  }
  if (method === 'heimdall' && android.ab) {
    throw new QwamosError('INPUT_INVALID', `device profile ${profile.id} is A/B but flashed with heimdall, which cannot choose a slot; this combination is not supported`);
  }
  checkSlotOptions(profile, options);

  const record = await readBuildRecord(dir);
  const { images, skipped } = await collectImages(profile, dir);
  const erase = eraseTargets(profile, images, options);
  const slot = android.ab ? planSlots(options.slot ?? 'other', options.currentSlot) : undefined;
  const reboot = options.reboot ?? true;

  const steps = method === 'fastboot' ? fastbootSteps(images, slot, erase, reboot) : heimdallSteps(images, reboot);
  return {
    device: profile.id,
    method,
    dir,
    slot,
    images,
    steps,
    record,
    warnings: [...skipped, ...profileWarnings(profile), ...slotWarnings(slot)],
    reboot,
  };
}

/** Replaces `other` in a plan's slots and targets once the device reports its current slot. */
export function resolvePlanSlots(plan: FlashPlan, currentSlot: Slot): FlashPlan {
  if (!plan.slot) return plan;
  const slot = planSlots(plan.slot.choice, currentSlot);
  const resolve = (target: SlotTarget): Slot => (target === 'other' ? otherSlot(currentSlot) : target);
  const steps = plan.steps.map((step): FlashStep => {
    if (step.kind === 'flash' && step.slot !== undefined) {
      const resolved = resolve(step.slot);
      return { ...step, slot: resolved, target: `${step.image.partition}_${resolved}` };
    }
    if (step.kind === 'set-active') return { ...step, slot: resolve(step.slot) };
    return step;
  });
  // An unresolved plan has no slot warnings, because the current slot was unknown.
  return { ...plan, slot, steps, warnings: [...plan.warnings, ...slotWarnings(slot)] };
}

export function otherSlot(slot: Slot): Slot {
  return slot === 'a' ? 'b' : 'a';
}

/** Returns the partition name on the device: `boot_b` for a slotted partition, else the name itself. */
export function targetName(partition: string, slot: SlotTarget | undefined): string {
  return slot === undefined ? partition : `${partition}_${slot === 'other' ? '<other>' : slot}`;
}

function checkSlotOptions(profile: DeviceProfile, options: FlashPlanOptions): void {
  if (options.slot !== undefined && !SLOT_CHOICES.includes(options.slot)) {
    throw new QwamosError('USAGE', `flash: --slot '${String(options.slot)}' is invalid; use a, b, all or other`);
  }
  if (options.slot !== undefined && !profile.android?.ab) {
    throw new QwamosError('USAGE', `flash: --slot was given, but ${profile.id} has no A/B slots; drop --slot`);
  }
}

function planSlots(choice: SlotChoice, current: Slot | undefined): NonNullable<FlashPlan['slot']> {
  switch (choice) {
    case 'all':
      // Both slots get the build, so the active slot stays as it is.
      return { choice, current, targets: ['a', 'b'] };
    case 'other': {
      const target: SlotTarget = current === undefined ? 'other' : otherSlot(current);
      return { choice, current, targets: [target], setActive: target };
    }
    default:
      return { choice, current, targets: [choice], setActive: choice };
  }
}

function profileWarnings(profile: DeviceProfile): string[] {
  const flashFacts = (profile.unconfirmed ?? []).filter((pointer) => pointer === '/codenames' || pointer === '/android/ab' || pointer.startsWith('/android/partitions/'));
  if (flashFacts.length === 0) return [];
  return [`profile ${profile.id} marks these flashing facts as unconfirmed: ${flashFacts.join(', ')}; the device checks compare them with what the device reports`];
}

function slotWarnings(slot: FlashPlan['slot']): string[] {
  const target = slot?.targets.length === 1 ? slot.targets[0] : undefined;
  if (!slot || target === undefined || target !== slot.current) return [];
  return [`slot ${target} is the slot the device runs now: if flashing stops part way, that slot holds a partial build; --slot other keeps it untouched until set_active`];
}

/** Reads DIR/build.json: the device id and the SHA-256 and size of each output file. */
export async function readBuildRecord(dir: string): Promise<BuildRecordSummary> {
  const file = path.join(dir, BUILD_RECORD_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new QwamosError('INPUT_NOT_FOUND', `${file} does not exist, so ${dir} is not a build output folder; give the folder that 'qwamos-build build' wrote`, { cause: error });
    }
    throw error;
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new QwamosError('INPUT_INVALID', `${file} is not valid JSON (${(error as Error).message}); rebuild to rewrite it`, { cause: error });
  }
  const outputs = typeof parsed === 'object' && parsed !== null ? (parsed as { outputs?: unknown }).outputs : undefined;
  if (!Array.isArray(outputs)) {
    throw new QwamosError('INPUT_INVALID', `${file} is invalid: at /outputs: expected a list of { name, size, sha256 }; rebuild to rewrite it`);
  }

  const sha256 = new Map<string, string>();
  const sizes = new Map<string, number>();
  for (const [index, output] of outputs.entries()) {
    const { name, size, sha256: digest } = output as { name?: unknown; size?: unknown; sha256?: unknown };
    if (typeof name !== 'string' || typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest) || typeof size !== 'number') {
      throw new QwamosError('INPUT_INVALID', `${file} is invalid: at /outputs/${index}: expected { name, size, sha256 } with a 64-digit lowercase hex sha256; rebuild to rewrite it`);
    }
    sha256.set(name, digest);
    sizes.set(name, size);
  }
  const device = (parsed as { device?: unknown }).device;
  return { device: typeof device === 'string' ? device : undefined, sha256, sizes };
}

/**
 * Lists the profile's images, then avb_custom_key where the profile marks
 * the bootloader as re-lockable. Heimdall plans leave out logical
 * partitions, because Download mode writes only PIT partitions. `skipped`
 * names each image left out.
 */
async function collectImages(profile: DeviceProfile, dir: string): Promise<{ images: FlashImage[]; skipped: string[] }> {
  const android = profile.android!;
  const heimdall = profile.flash.method === 'heimdall';
  const images: FlashImage[] = [];
  const skipped: string[] = [];

  for (const [partition, spec] of Object.entries(android.partitions)) {
    if (spec.image === undefined) continue;
    if (heimdall && spec.logical) {
      skipped.push(`${spec.image} is not flashed: ${partition} is a logical partition inside super, which heimdall cannot write`);
      continue;
    }
    if (heimdall && spec.pitName === undefined) {
      throw new QwamosError('INPUT_INVALID', `device-profiles/${profile.id}.yaml is invalid: at /android/partitions/${partition}: heimdall needs the PIT name; add pitName`);
    }
    images.push(await describeImage(dir, partition, spec.image, spec, android.ab));
  }

  if (!heimdall && android.avb.customKey && android.avb.relockable) {
    images.push(await describeImage(dir, AVB_CUSTOM_KEY_PARTITION, AVB_CUSTOM_KEY_FILE, undefined, false));
  }
  if (heimdall && images.some((image) => image.sparse)) {
    const sparse = images.filter((image) => image.sparse).map((image) => image.file).join(', ');
    throw new QwamosError('INPUT_INVALID', `${sparse} in ${dir} is a sparse image, but heimdall writes files as they are; expand it with 'qwamos-build sparse unpack' in the build`);
  }
  return { images, skipped };
}

async function describeImage(dir: string, partition: string, file: string, spec: PartitionSpec | undefined, ab: boolean): Promise<FlashImage> {
  const imagePath = path.join(dir, file);
  const info = await stat(imagePath).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') {
      throw new QwamosError('INPUT_NOT_FOUND', `${imagePath} does not exist, but partition ${partition} needs it; rebuild, or check that ${dir} is the build for this device`);
    }
    throw error;
  });
  if (!info.isFile()) throw new QwamosError('INPUT_INVALID', `${imagePath} is not a regular file`);

  const sparse = await isSparseImage(imagePath);
  const imageSize = sparse ? (await readSparseImage(imagePath)).rawSize : info.size;
  return {
    partition,
    file,
    path: imagePath,
    fileSize: info.size,
    imageSize,
    sparse,
    sha256: await sha256OfFile(imagePath),
    profileSize: spec?.size,
    logical: spec?.logical ?? false,
    slotted: ab && (spec?.slotted ?? true) && spec !== undefined,
    pitName: spec?.pitName,
  };
}

/** Returns the SHA-256 of a file as lowercase hex, reading it in a stream. */
export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Returns the partitions to erase. Only the physical partitions this plan
 * flashes, userdata, metadata and avb_custom_key may be erased: erasing
 * anything else (persist, efs, modem, the bootloader itself) can make a
 * phone unusable, so that stays a manual `fastboot erase`. Logical
 * partitions are left out because erases run in the bootloader.
 */
function eraseTargets(profile: DeviceProfile, images: FlashImage[], options: FlashPlanOptions): { target: string; reason: 'requested' | 'wipe' }[] {
  const requested = options.erase ?? [];
  if ((requested.length > 0 || options.wipe) && profile.flash.method === 'heimdall') {
    throw new QwamosError('USAGE', `flash: --erase and --wipe need fastboot, but ${profile.id} is flashed with heimdall; wipe from the phone's recovery instead`);
  }

  const allowed = new Set<string>([...WIPE_PARTITIONS, AVB_CUSTOM_KEY_PARTITION]);
  for (const image of images.filter((candidate) => !candidate.logical)) {
    if (image.slotted) {
      allowed.add(`${image.partition}_a`);
      allowed.add(`${image.partition}_b`);
    } else {
      allowed.add(image.partition);
    }
  }
  for (const name of requested) {
    if (!allowed.has(name)) {
      throw new QwamosError('USAGE', `flash: --erase ${name} is not allowed; qwamos-build erases only ${[...allowed].sort().join(', ')} (slotted partitions with their _a or _b suffix); erase other partitions with fastboot yourself`);
    }
  }

  const targets: { target: string; reason: 'requested' | 'wipe' }[] = requested.map((target) => ({ target, reason: 'requested' }));
  if (options.wipe) {
    for (const target of WIPE_PARTITIONS) {
      if (!requested.includes(target)) targets.push({ target, reason: 'wipe' });
    }
  }
  return targets;
}

function fastbootSteps(images: FlashImage[], slot: FlashPlan['slot'], erase: { target: string; reason: 'requested' | 'wipe' }[], reboot: boolean): FlashStep[] {
  const steps: FlashStep[] = [];
  const flashSteps = (image: FlashImage, mode: StepMode): FlashStep[] => {
    if (!image.slotted || !slot) return [{ kind: 'flash', mode, image, target: image.partition }];
    return slot.targets.map((target) => ({ kind: 'flash', mode, image, slot: target, target: targetName(image.partition, target) }));
  };

  const physical = images.filter((image) => !image.logical);
  const logical = images.filter((image) => image.logical);
  for (const image of physical) steps.push(...flashSteps(image, 'bootloader'));

  if (logical.length > 0) {
    steps.push({ kind: 'reboot-fastboot' });
    for (const image of logical) steps.push(...flashSteps(image, 'fastbootd'));
    steps.push({ kind: 'reboot-bootloader' });
  }

  for (const { target, reason } of erase) steps.push({ kind: 'erase', mode: 'bootloader', target, reason });
  if (slot?.setActive !== undefined) steps.push({ kind: 'set-active', slot: slot.setActive });
  if (reboot) steps.push({ kind: 'reboot' });
  return steps;
}

/** Lists the PIT partitions of a heimdall plan as steps; heimdall writes them all in one `heimdall flash` call. */
function heimdallSteps(images: FlashImage[], reboot: boolean): FlashStep[] {
  const steps: FlashStep[] = images.map((image) => ({ kind: 'flash', mode: 'download', image, target: image.pitName! }));
  if (reboot) steps.push({ kind: 'reboot' });
  return steps;
}

/** Converts a plan to plain JSON for `flash --json`: steps with file names, sizes and digests, no Maps. */
export function planToJson(plan: FlashPlan): Record<string, unknown> {
  return {
    device: plan.device,
    method: plan.method,
    dir: plan.dir,
    slot: plan.slot ?? null,
    reboot: plan.reboot,
    steps: plan.steps.map((step) => {
      switch (step.kind) {
        case 'flash':
          return {
            kind: step.kind,
            mode: step.mode,
            partition: step.target,
            file: step.image.file,
            size: step.image.fileSize,
            imageSize: step.image.imageSize,
            sparse: step.image.sparse,
            sha256: step.image.sha256,
            logical: step.image.logical,
          };
        case 'erase':
          return { kind: step.kind, mode: step.mode, partition: step.target, reason: step.reason };
        case 'set-active':
          return { kind: step.kind, slot: step.slot };
        default:
          return { kind: step.kind };
      }
    }),
    warnings: plan.warnings,
  };
}
