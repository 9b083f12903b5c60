/**
 * The lockfile `qwamos.lock.yaml`: every build input pinned to one Debian
 * package version with the size and SHA-256 of its .deb file. Only
 * `qwamos-build lock update` writes it; the build reads it and never
 * changes it.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { Document, LineCounter, parseDocument } from 'yaml';
import { writeFileAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import lockfileSchema from '../schemas/lockfile.schema.json' with { type: 'json' };

/** File name of the lockfile at the repository root. */
export const LOCKFILE_NAME = 'qwamos.lock.yaml';

export const LOCKFILE_VERSION = 1;

export type DebianArchitecture = 'all' | 'amd64' | 'arm64';

/** One pinned input; the fields match `definitions.input` in schemas/lockfile.schema.json. */
export interface LockedInput {
  /** Name the build uses to look up the input, such as linux-source-6.1. */
  name: string;
  kind: 'debian-package';
  /** Debian binary package name. */
  package: string;
  /** Debian version including any epoch, such as 1:1.35.0-4+deb12u1+b1. */
  version: string;
  architecture: DebianArchitecture;
  /** Archive suite and component the version came from, such as bookworm-security/main. */
  archive: string;
  /** File name of the .deb in the Debian archive pool. */
  file: string;
  /** Size of the .deb in bytes. */
  size: number;
  /** SHA-256 of the .deb, lowercase hex. */
  sha256: string;
}

export interface Lockfile {
  lockfileVersion: typeof LOCKFILE_VERSION;
  /** Codename of the Debian release all inputs come from, such as bookworm. */
  suite: string;
  inputs: LockedInput[];
}

const HEADER_COMMENT = [
  ' Pinned build inputs of qwamos-build.',
  ' Written by `qwamos-build lock update`; the build only reads this file.',
  ' Each .deb is checked against its sha256 before use.',
].join('\n');

const ajv = new Ajv({ allErrors: true, verbose: true });
const validateLockfileSchema: ValidateFunction = ajv.compile(lockfileSchema as object);

/** Returns the lockfile path in the current folder, where the repository root is expected. */
export function defaultLockfilePath(): string {
  return path.resolve(LOCKFILE_NAME);
}

/** Reads and validates a lockfile; errors name the file and the JSON path of the invalid field. */
export async function loadLockfile(lockfilePath: string): Promise<Lockfile> {
  let text: string;
  try {
    text = await readFile(lockfilePath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new QwamosError('INPUT_NOT_FOUND', `lockfile ${lockfilePath} not found; run qwamos-build from the repository root, pass --lockfile PATH, or create it with 'qwamos-build lock update --add PACKAGE:ARCHITECTURE'`, {
        data: { file: lockfilePath },
      });
    }
    throw error;
  }

  return parseLockfile(text, lockfilePath);
}

/** Parses lockfile text; `fileName` is used in error messages only. */
export function parseLockfile(text: string, fileName: string): Lockfile {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { prettyErrors: false, lineCounter });
  const yamlError = document.errors[0];
  if (yamlError) {
    const position = lineCounter.linePos(yamlError.pos[0]);
    const where = `${fileName}:${position.line}:${position.col}`;
    throw new QwamosError('INPUT_INVALID', `${where}: invalid YAML: ${yamlError.message}`, { data: { file: fileName } });
  }

  const value: unknown = document.toJS();
  validateLockfile(value, fileName);
  return value;
}

/** Checks `value` against the lockfile schema and the rules the schema cannot express. */
export function validateLockfile(value: unknown, fileName: string): asserts value is Lockfile {
  if (!validateLockfileSchema(value)) {
    const problems = (validateLockfileSchema.errors ?? []).map(describeSchemaError);
    throwInvalid(fileName, problems);
  }

  const lockfile = value as Lockfile;
  const problems: SchemaProblem[] = [];
  const seen = new Set<string>();
  lockfile.inputs.forEach((input, index) => {
    if (seen.has(input.name)) {
      problems.push({ path: `/inputs/${index}/name`, text: `duplicate input name '${input.name}'; expected each name once` });
    }
    seen.add(input.name);

    if (!archiveBelongsToSuite(input.archive, lockfile.suite)) {
      problems.push({ path: `/inputs/${index}/archive`, text: `expected an archive of suite ${lockfile.suite} (${lockfile.suite}/COMPONENT or ${lockfile.suite}-UPDATES/COMPONENT), got '${input.archive}'` });
    }
  });
  if (problems.length > 0) throwInvalid(fileName, problems);
}

/** True when an archive such as bookworm-security/main belongs to release `suite` (bookworm). */
export function archiveBelongsToSuite(archive: string, suite: string): boolean {
  return archive.startsWith(`${suite}/`) || archive.startsWith(`${suite}-`);
}

/** Returns the input named `name`, or an INPUT_NOT_FOUND error listing the names the lockfile has. */
export function findLockedInput(lockfile: Lockfile, name: string, lockfilePath = LOCKFILE_NAME): LockedInput {
  const input = lockfile.inputs.find((candidate) => candidate.name === name);
  if (!input) {
    const names = lockfile.inputs.map((candidate) => candidate.name).join(', ');
    throw new QwamosError('INPUT_NOT_FOUND', `${lockfilePath} has no input named '${name}'; its inputs are: ${names}`, {
      data: { file: lockfilePath, input: name },
    });
  }
  return input;
}

/** Formats a lockfile as YAML with a fixed key order, so rewrites give small diffs. */
export function serializeLockfile(lockfile: Lockfile): string {
  const ordered: Lockfile = {
    lockfileVersion: lockfile.lockfileVersion,
    suite: lockfile.suite,
    inputs: lockfile.inputs.map((input) => ({
      name: input.name,
      kind: input.kind,
      package: input.package,
      version: input.version,
      architecture: input.architecture,
      archive: input.archive,
      file: input.file,
      size: input.size,
      sha256: input.sha256,
    })),
  };

  const document = new Document(ordered);
  document.commentBefore = HEADER_COMMENT;
  return document.toString({ lineWidth: 0 });
}

/** Validates `lockfile` and writes it through a temporary file and rename. */
export async function writeLockfile(lockfilePath: string, lockfile: Lockfile): Promise<void> {
  validateLockfile(structuredClone(lockfile), lockfilePath);
  await writeFileAtomic(lockfilePath, serializeLockfile(lockfile));
}

interface SchemaProblem {
  /** JSON Pointer of the invalid value, '' for the whole document. */
  path: string;
  text: string;
}

function throwInvalid(fileName: string, problems: SchemaProblem[]): never {
  const lines = problems.map((problem) => `${problem.path || '/'}: ${problem.text}`);
  throw new QwamosError('INPUT_INVALID', `${fileName} is not a valid lockfile: ${lines[0] ?? 'unknown schema error'}; fix that field as schemas/lockfile.schema.json describes`, {
    details: lines,
    data: { file: fileName, errors: problems },
  });
}

/** Turns one ajv error into a JSON path and a sentence saying what was expected and what was found. */
function describeSchemaError(error: ErrorObject): SchemaProblem {
  const found = error.data === undefined ? '' : `, got ${JSON.stringify(error.data)}`;
  const params = error.params as Record<string, unknown>;

  switch (error.keyword) {
    case 'required':
      return { path: `${error.instancePath}/${String(params.missingProperty)}`, text: 'required field is missing' };
    case 'additionalProperties':
      return { path: `${error.instancePath}/${String(params.additionalProperty)}`, text: 'unknown field; remove it' };
    case 'enum':
      return { path: error.instancePath, text: `expected one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}${found}` };
    case 'const':
      return { path: error.instancePath, text: `expected ${JSON.stringify(params.allowedValue)}${found}` };
    case 'pattern':
      return { path: error.instancePath, text: `expected a string matching ${String(params.pattern)}${found}` };
    case 'type':
      return { path: error.instancePath, text: `expected ${String(params.type)}${found}` };
    default:
      return { path: error.instancePath, text: `${error.message ?? 'invalid'}${found}` };
  }
}
