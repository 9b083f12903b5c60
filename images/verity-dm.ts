/**
 * Kernel command-line text that creates a read-only dm-verity device at boot
 * through dm-init (`dm-mod.create=`, CONFIG_DM_INIT), from the result of
 * appendHashTree. Syntax from the Linux 6.1 documentation
 * (admin-guide/device-mapper/verity.rst and dm-init.rst):
 *
 *   dm-mod.create=<name>,<uuid>,<minor>,<flags>,<table>
 *   table: <start_sector> <num_sectors> verity <version> <dev> <hash_dev>
 *          <data_block_size> <hash_block_size> <num_data_blocks>
 *          <hash_start_block> <algorithm> <root digest> <salt>
 *          [<#opt_params> <opt_params>...]
 *
 * hash_start_block counts hash blocks from the start of hash_dev to the
 * first (top-level) block of the tree. Sectors are 512 bytes.
 */
import { QwamosError } from '../core/errors.js';
import type { VerityImage } from './verity-image.js';

export interface VerityTableOptions {
  /** Device with the data. Default '/dev/vda', the first virtio disk under QEMU. */
  dataDevice?: string;
  /** Device with the tree. Default: the data device, with the tree after the data. */
  hashDevice?: string;
  /** Optional verity parameters, such as ['panic_on_corruption']. */
  optionalParams?: string[];
}

export interface DmModCreateOptions extends VerityTableOptions {
  /** Device-mapper device name. Default 'system'. */
  name?: string;
  /** Device-mapper UUID. Default: none. */
  uuid?: string;
  /** Minor number of the device. Default: the kernel picks one. */
  minor?: number;
}

const SECTOR_SIZE = 512;

/** dm-init copies names into 128-byte and UUIDs into 129-byte fields, NUL included (DM_NAME_LEN, DM_UUID_LEN). */
const MAX_NAME_LENGTH = 127;
const MAX_UUID_LENGTH = 128;

/** dm-init (drivers/md/dm-init.c, DM_MAX_STR_SIZE) rejects a dm-mod.create value of 4096 bytes or more. */
const MAX_CREATE_LENGTH = 4095;

/** dm-init minor numbers must be below 1 << MINORBITS (20). */
const MAX_MINOR = (1 << 20) - 1;

/** Characters that would end a field of the dm-init syntax or the quoted kernel parameter. */
const SEPARATORS = /[\s,;"]/;

/** Formats the dm-verity table line for `image` (one target, starting at sector 0). */
export function formatVerityTable(image: VerityImage, options: VerityTableOptions = {}): string {
  const dataDevice = options.dataDevice ?? '/dev/vda';
  const hashDevice = options.hashDevice ?? dataDevice;
  const optionalParams = options.optionalParams ?? [];

  checkToken('data device', dataDevice);
  checkToken('hash device', hashDevice);
  for (const param of optionalParams) checkToken('optional parameter', param);

  if (image.hashOffset % image.hashBlockSize !== 0) {
    throw new QwamosError('INPUT_INVALID', `dm-verity hash offset ${image.hashOffset} is not a multiple of the hash block size ${image.hashBlockSize}; the table counts the offset in hash blocks, so align the tree`);
  }

  const sectors = (image.dataBlocks * image.dataBlockSize) / SECTOR_SIZE;
  const salt = image.salt.length === 0 ? '-' : image.salt.toString('hex');
  const fields = [
    0, sectors, 'verity', 1, dataDevice, hashDevice,
    image.dataBlockSize, image.hashBlockSize, image.dataBlocks, image.hashOffset / image.hashBlockSize,
    image.hashAlgorithm, image.rootDigest.toString('hex'), salt,
  ];
  if (optionalParams.length > 0) fields.push(optionalParams.length, ...optionalParams);
  return fields.join(' ');
}

/**
 * Formats the kernel parameter `dm-mod.create="<name>,<uuid>,<minor>,ro,<table>"`
 * for a read-only dm-verity device over `image`. The value is quoted because
 * the table contains spaces.
 */
export function formatDmModCreate(image: VerityImage, options: DmModCreateOptions = {}): string {
  const name = options.name ?? 'system';
  const uuid = options.uuid ?? '';
  const minor = options.minor === undefined ? '' : String(options.minor);

  checkToken('device-mapper name', name);
  if (Buffer.byteLength(name) > MAX_NAME_LENGTH || name === '.' || name === '..' || name.includes('/')) {
    throw new QwamosError('INPUT_INVALID', `device-mapper name ${JSON.stringify(name)} is invalid; use at most ${MAX_NAME_LENGTH} bytes without '/', and not '.' or '..'`);
  }
  if (uuid !== '') checkToken('device-mapper UUID', uuid);
  if (Buffer.byteLength(uuid) > MAX_UUID_LENGTH) {
    throw new QwamosError('INPUT_INVALID', `device-mapper UUID ${JSON.stringify(uuid)} is longer than ${MAX_UUID_LENGTH} bytes; shorten it`);
  }
  if (options.minor !== undefined && (!Number.isInteger(options.minor) || options.minor < 0 || options.minor > MAX_MINOR)) {
    throw new QwamosError('INPUT_INVALID', `device-mapper minor number ${options.minor} is invalid; give an integer from 0 to ${MAX_MINOR} or leave it unset`);
  }

  const value = [name, uuid, minor, 'ro', formatVerityTable(image, options)].join(',');
  if (value.length > MAX_CREATE_LENGTH) {
    throw new QwamosError('LIMIT_EXCEEDED', `dm-mod.create value is ${value.length} bytes; the kernel accepts at most ${MAX_CREATE_LENGTH}, so shorten the device paths or optional parameters`);
  }
  return `dm-mod.create="${value}"`;
}

function checkToken(what: string, value: string): void {
  if (typeof value !== 'string' || value === '' || SEPARATORS.test(value)) {
    throw new QwamosError('INPUT_INVALID', `dm-verity ${what} ${JSON.stringify(value)} is invalid; it must be non-empty and contain no spaces, commas, semicolons or double quotes`);
  }
}
