/**
 * Checks that the dm-verity parameters signed into the system manifest are
 * the ones in verity.json and the ones the kernel uses. dm-init sets up the
 * verity device from the `dm-mod.create=` parameter of the kernel command
 * line in boot.json (syntax in images/verity-dm.ts).
 */
import type { VerityParameters } from './manifest.js';
import { checkFailed } from './verify-build-row.js';

const SECTOR_SIZE = 512;

/**
 * dm-verity options that turn a hash mismatch into a successful read
 * (Linux 6.1 Documentation/admin-guide/device-mapper/verity.rst), so a
 * table with one of them does not protect the data.
 */
const UNSAFE_VERITY_OPTIONS = ['ignore_corruption'];

/** Returns the compared values as the manifest states them, in the verity.json field names. */
function expectedValues(verity: VerityParameters): Record<string, string> {
  return {
    hashAlgorithm: verity.hashAlgorithm,
    dataBlockSize: String(verity.dataBlockSize),
    hashBlockSize: String(verity.hashBlockSize),
    dataBlocks: String(verity.dataBlockCount),
    hashOffset: String(verity.hashTreeOffset),
    rootDigest: Buffer.from(verity.rootDigest).toString('hex'),
    salt: Buffer.from(verity.salt).toString('hex'),
  };
}

function mismatch(where: string, field: string, found: unknown, expected: string): never {
  return checkFailed(`verity parameters mismatch (${where} ${field} is ${JSON.stringify(found)}, the manifest has ${JSON.stringify(expected)})`);
}

/** Fails the check unless verity.json (`record`, parsed JSON) has the manifest's verity parameters. */
export function checkVerityRecord(verity: VerityParameters, record: unknown, file: string): void {
  const fields = (record ?? {}) as Record<string, unknown>;
  for (const [field, expected] of Object.entries(expectedValues(verity))) {
    const found = fields[field];
    const text = typeof found === 'string' ? found.toLowerCase() : typeof found === 'number' ? String(found) : undefined;
    if (text !== expected) mismatch(file, field, found, expected);
  }
}

/**
 * Splits a kernel command line into parameters as the kernel's
 * parse_args does: at spaces outside double quotes, with the quotes
 * removed.
 */
export function splitKernelCmdline(cmdline: string): string[] {
  const parameters: string[] = [];
  let current = '';
  let quoted = false;
  for (const character of cmdline) {
    if (character === '"') {
      quoted = !quoted;
    } else if (/\s/.test(character) && !quoted) {
      if (current !== '') parameters.push(current);
      current = '';
    } else {
      current += character;
    }
  }
  if (current !== '') parameters.push(current);
  return parameters;
}

/** One dm-init device: `name,uuid,minor,flags,table[,table]...`. */
interface DmInitDevice {
  name: string;
  flags: string;
  tables: string[][];
}

function parseDmModCreate(value: string): DmInitDevice[] {
  return value.split(';').map((device) => {
    const [name = '', , , flags = '', ...tables] = device.split(',');
    return { name, flags, tables: tables.map((table) => table.trim().split(/\s+/)) };
  });
}

/**
 * Fails the check unless the kernel command line has exactly one
 * `dm-mod.create=` parameter with exactly one verity table, read-only,
 * whose values are the manifest's. A table line is: start sector, sector
 * count, 'verity', version, data device, hash device, data and hash block
 * sizes, data block count, hash start block, algorithm, root digest, salt
 * ('-' for none), then optional arguments.
 */
export function checkDmModCreate(verity: VerityParameters, cmdline: unknown, file: string): void {
  if (typeof cmdline !== 'string') checkFailed(`verity parameters mismatch (${file} has no 'cmdline' string)`);

  const creates = splitKernelCmdline(cmdline).filter((parameter) => parameter.startsWith('dm-mod.create='));
  if (creates.length !== 1) checkFailed(`verity parameters mismatch (${file} cmdline has ${creates.length} dm-mod.create= parameters, expected 1)`);

  const devices = parseDmModCreate(creates[0]!.slice('dm-mod.create='.length));
  const verityDevices = devices.filter((device) => device.tables.some((table) => table[2] === 'verity'));
  if (verityDevices.length !== 1 || verityDevices[0]!.tables.length !== 1) {
    checkFailed(`verity parameters mismatch (${file} dm-mod.create= must create one device with one verity table)`);
  }
  const device = verityDevices[0]!;
  if (device.flags !== 'ro') checkFailed(`verity parameters mismatch (${file} dm-mod.create= device '${device.name}' has flags '${device.flags}', expected 'ro')`);

  const where = `${file} dm-mod.create=`;
  const table = device.tables[0]!;
  const [start, sectors, , version, dataDevice, hashDevice, dataBlockSize, hashBlockSize, dataBlocks, hashStartBlock, algorithm, rootDigest, salt, ...options] = table;
  const expected = expectedValues(verity);
  const expectedSectors = (verity.dataBlockCount * BigInt(verity.dataBlockSize)) / BigInt(SECTOR_SIZE);
  const expectedStartBlock = verity.hashTreeOffset / BigInt(verity.hashBlockSize);

  if (start !== '0') mismatch(where, 'start sector', start, '0');
  if (sectors !== String(expectedSectors)) mismatch(where, 'sector count', sectors, String(expectedSectors));
  if (version !== '1') mismatch(where, 'version', version, '1');
  if (dataDevice !== hashDevice) checkFailed(`verity parameters mismatch (${where} reads the hash tree from ${hashDevice ?? 'nothing'}, not from the data device ${dataDevice ?? 'nothing'} where the manifest places it)`);
  if (dataBlockSize !== expected.dataBlockSize) mismatch(where, 'data block size', dataBlockSize, expected.dataBlockSize!);
  if (hashBlockSize !== expected.hashBlockSize) mismatch(where, 'hash block size', hashBlockSize, expected.hashBlockSize!);
  if (dataBlocks !== expected.dataBlocks) mismatch(where, 'data block count', dataBlocks, expected.dataBlocks!);
  if (hashStartBlock !== String(expectedStartBlock)) mismatch(where, 'hash start block', hashStartBlock, String(expectedStartBlock));
  if (algorithm !== expected.hashAlgorithm) mismatch(where, 'algorithm', algorithm, expected.hashAlgorithm!);
  if (rootDigest?.toLowerCase() !== expected.rootDigest) mismatch(where, 'root digest', rootDigest, expected.rootDigest!);
  const saltText = salt === '-' ? '' : salt?.toLowerCase();
  if (saltText !== expected.salt) mismatch(where, 'salt', salt, expected.salt === '' ? '-' : expected.salt!);

  const unsafe = options.filter((option) => UNSAFE_VERITY_OPTIONS.includes(option));
  if (unsafe.length > 0) checkFailed(`verity parameters mismatch (${where} sets ${unsafe.join(', ')}, which lets reads of corrupted blocks succeed)`);
}
