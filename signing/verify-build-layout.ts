/**
 * The build output folder as `qwamos-build verify` reads it: build.json
 * with its `chain` section, which names the manifests, images and keys of
 * each boot stage. A folder whose build.json is missing, invalid or lacks
 * the QWAMOS boot stages is rejected with INPUT_NOT_FOUND or INPUT_INVALID
 * (exit status 2), before any check runs.
 *
 * Host builds (QEMU) name stage-key certificates, the key embedded in the
 * initramfs and the system manifest partition, and add boot.json and
 * verity.json. Phone builds name none of these, so those checks run only
 * for what the chain names or the folder contains.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Ajv } from 'ajv';
import { QwamosError } from '../core/errors.js';
import { describeSchemaError } from '../core/schema.js';
import { checkFailed } from './verify-build-row.js';

export const BUILD_RECORD_FILE = 'build.json';
export const VERITY_RECORD_FILE = 'verity.json';
export const BOOT_CONFIG_FILE = 'boot.json';
export const CHAIN_FORMAT_VERSION = 1;

/** Keys that sign stages; each role certifies nothing, the root key certifies the other two. */
export type ChainKeyRole = 'root' | 'system-stage' | 'guest-stage';

/** The role whose key signs the stage after a stage signed by `role`. */
export const NEXT_ROLE: Record<ChainKeyRole, ChainKeyRole | undefined> = {
  root: 'system-stage',
  'system-stage': 'guest-stage',
  'guest-stage': undefined,
};

export interface ChainStage {
  stage: string;
  /** Manifest file in the folder. */
  manifest: string;
  /** Image file the manifest covers. */
  image: string;
  signer: ChainKeyRole;
  /** Disk image that carries the manifest to the guest: the manifest, then zeros up to 8,192 bytes. */
  manifestPartition?: string;
  /** Path inside the image (a cpio archive) of the raw public key of the next stage's signer. */
  embeddedPublicKey?: string;
  /** The image carries a dm-verity hash tree that the kernel command line sets up. */
  verity?: boolean;
}

export interface ChainVbmeta {
  /** vbmeta image file. */
  image: string;
  /** AVB public key blob file. */
  publicKey: string;
  /** Image file of each partition that the vbmeta's hash descriptors cover. */
  partitions: Record<string, string>;
}

export interface ChainRecord {
  formatVersion: 1;
  deviceProfile: string;
  vbmeta?: ChainVbmeta;
  stages: ChainStage[];
  /** Public key (SPKI PEM) file of each role, and the certificate of each stage role as ROLE-certificate when the build publishes one. */
  keys: Record<ChainKeyRole, string> & Partial<Record<'system-stage-certificate' | 'guest-stage-certificate', string>>;
}

export interface BuildOutput {
  /** Absolute path of the folder. */
  dir: string;
  /** build.json `device`. */
  device: string;
  chain: ChainRecord;
}

/**
 * The stages every QWAMOS build signs, in boot order. A build.json whose
 * chain lists other stages is rejected, so that a changed build.json
 * cannot drop a stage from the checks.
 */
const BOOT_STAGES: readonly { stage: string; signer: ChainKeyRole; verity: boolean }[] = [
  { stage: 'kernel', signer: 'root', verity: false },
  { stage: 'initramfs', signer: 'root', verity: false },
  { stage: 'system', signer: 'system-stage', verity: true },
];

const fileName = { type: 'string', minLength: 1 } as const;

const CHAIN_SCHEMA = {
  type: 'object',
  required: ['formatVersion', 'deviceProfile', 'stages', 'keys'],
  properties: {
    formatVersion: { const: CHAIN_FORMAT_VERSION },
    deviceProfile: { type: 'string', minLength: 1 },
    vbmeta: {
      type: 'object',
      required: ['image', 'publicKey', 'partitions'],
      properties: {
        image: fileName,
        publicKey: fileName,
        partitions: { type: 'object', minProperties: 1, additionalProperties: fileName },
      },
    },
    stages: {
      type: 'array',
      items: {
        type: 'object',
        required: ['stage', 'manifest', 'image', 'signer'],
        properties: {
          stage: { type: 'string', minLength: 1 },
          manifest: fileName,
          image: fileName,
          signer: { enum: ['root', 'system-stage', 'guest-stage'] },
          manifestPartition: fileName,
          embeddedPublicKey: fileName,
          verity: { type: 'boolean' },
        },
      },
    },
    keys: {
      type: 'object',
      required: ['root', 'system-stage', 'guest-stage'],
      properties: {
        root: fileName,
        'system-stage': fileName,
        'guest-stage': fileName,
        'system-stage-certificate': fileName,
        'guest-stage-certificate': fileName,
      },
    },
  },
} as const;

const validateChain = new Ajv({ allErrors: true, strict: true }).compile(CHAIN_SCHEMA);

function invalidOutput(file: string, problem: string): never {
  throw new QwamosError('INPUT_INVALID', `${file}: ${problem}; this folder is not a complete signed build output, so build it again with 'qwamos-build build'`, { data: { file } });
}

/** Reads and checks build.json of the folder `dir` and returns its chain. */
export async function readBuildOutput(dir: string): Promise<BuildOutput> {
  const absolute = path.resolve(dir);
  const folder = await stat(absolute).catch(() => undefined);
  if (!folder?.isDirectory()) throw new QwamosError('INPUT_NOT_FOUND', `build output folder ${dir} does not exist; pass the --out folder of 'qwamos-build build'`);

  const file = path.join(absolute, BUILD_RECORD_FILE);
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `${file} not found: ${dir} is not a build output folder; pass the --out folder of 'qwamos-build build'`);
    throw error;
  });
  let record: { formatVersion?: unknown; device?: unknown; chain?: unknown };
  try {
    record = JSON.parse(text) as typeof record;
  } catch (error) {
    invalidOutput(file, `invalid JSON (${(error as Error).message})`);
  }

  if (record.formatVersion !== 1) invalidOutput(file, `formatVersion is ${JSON.stringify(record.formatVersion)}, expected 1`);
  if (typeof record.device !== 'string') invalidOutput(file, "'device' is missing");
  if (record.chain === undefined) invalidOutput(file, "there is no 'chain' section, so the build was not signed");
  if (!validateChain(record.chain)) invalidOutput(file, `chain ${(validateChain.errors ?? []).map(describeSchemaError).join('; ')}`);

  const chain = record.chain as ChainRecord;
  checkBootStages(chain, file);
  checkFileNames(chain, file);
  if (chain.deviceProfile !== record.device) invalidOutput(file, `chain deviceProfile '${chain.deviceProfile}' differs from device '${record.device}'`);
  return { dir: absolute, device: record.device, chain };
}

function checkBootStages(chain: ChainRecord, file: string): void {
  const expected = `${BOOT_STAGES.map((stage) => `${stage.stage} (${stage.signer})`).join(', ')}, the system with verity`;
  if (chain.stages.length !== BOOT_STAGES.length) invalidOutput(file, `chain lists ${chain.stages.length} stages; a QWAMOS build has ${expected}`);

  chain.stages.forEach((stage, index) => {
    const boot = BOOT_STAGES[index]!;
    if (stage.stage !== boot.stage || stage.signer !== boot.signer || (stage.verity ?? false) !== boot.verity) {
      invalidOutput(file, `chain stage ${index} ('${stage.stage}' signed by ${stage.signer}) is not stage ${index} of a QWAMOS build, which has ${expected}`);
    }
  });
}

/** Every file name must stay inside the folder, so that a build.json cannot point the checks elsewhere. */
function checkFileNames(chain: ChainRecord, file: string): void {
  const names = [
    ...chain.stages.flatMap((stage) => [stage.manifest, stage.image, ...(stage.manifestPartition === undefined ? [] : [stage.manifestPartition])]),
    ...Object.values(chain.keys).filter((name): name is string => name !== undefined),
    ...(chain.vbmeta ? [chain.vbmeta.image, chain.vbmeta.publicKey, ...Object.values(chain.vbmeta.partitions)] : []),
  ];
  for (const name of names) {
    const parts = name.split('/');
    if (path.isAbsolute(name) || name.includes('\\') || parts.some((part) => part === '' || part === '.' || part === '..')) {
      invalidOutput(file, `chain names the file ${JSON.stringify(name)}, which is not a plain relative path inside the folder`);
    }
  }
}

/** Returns the absolute path of `name` in the build output. */
export function outputPath(build: BuildOutput, name: string): string {
  return path.join(build.dir, name);
}

/**
 * Reads a file of the build output. A missing or unreadable file fails
 * the current check with 'cannot read (FILE: ERROR)'.
 */
export async function readOutputFile(build: BuildOutput, name: string): Promise<Buffer> {
  const file = outputPath(build, name);
  try {
    return await readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    checkFailed(`cannot read (${file}: ${code})`);
  }
}

/** Returns false when the file does not exist in the build output; other errors show when it is read. */
export async function outputExists(build: BuildOutput, name: string): Promise<boolean> {
  return stat(outputPath(build, name)).then(() => true, (error: NodeJS.ErrnoException) => error.code !== 'ENOENT');
}

/** Reads and parses a JSON file of the build output; a missing file or invalid JSON fails the current check. */
export async function readOutputJson(build: BuildOutput, name: string): Promise<unknown> {
  const text = (await readOutputFile(build, name)).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    checkFailed(`cannot read (${outputPath(build, name)}: invalid JSON, ${(error as Error).message})`, 'cannot read');
  }
}
