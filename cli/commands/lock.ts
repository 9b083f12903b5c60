/**
 * `qwamos-build lock update` pins the current Debian package versions in
 * qwamos.lock.yaml; `qwamos-build lock fetch` downloads and verifies the
 * pinned files into the download cache. Only `lock update` writes the
 * lockfile.
 */
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from '../command.js';
import { formatTable, parseCommandArgs, printJson } from '../command.js';
import { QwamosError, isQwamosError } from '../../core/errors.js';
import { resolveCacheDir } from '../../pipeline/download-cache.js';
import { fetchInputWithSource, resolveCurrentInput, type FetchResult, type InputRequest } from '../../pipeline/fetch-apt.js';
import {
  LOCKFILE_VERSION,
  defaultLockfilePath,
  findLockedInput,
  loadLockfile,
  writeLockfile,
  type DebianArchitecture,
  type LockedInput,
  type Lockfile,
} from '../../pipeline/lockfile.js';

const ARCHITECTURES: readonly DebianArchitecture[] = ['all', 'amd64', 'arm64'];

const SHARED_OPTIONS_HELP = `  --input NAME          Only this input; repeat for several (default: all inputs)
  --lockfile PATH       Lockfile to use (default: ./qwamos.lock.yaml)
  --cache-dir DIR       Download cache folder (default: $QWAMOS_CACHE_DIR,
                        else $XDG_CACHE_HOME/qwamos-build, else ~/.cache/qwamos-build)
  --json                Print the result as JSON on stdout
  -h, --help            Show this help`;

const lockUpdateCommand: Command = {
  name: ['lock', 'update'],
  summary: 'Pin the current Debian package versions in qwamos.lock.yaml',
  help: `Usage: qwamos-build lock update [--input NAME]... [--add PACKAGE:ARCH]... [OPTIONS]

Resolves the candidate version of each input with apt-cache policy, downloads
it with apt-get download into the download cache, checks it against the
SHA-256 of the signed APT index and rewrites the lockfile. Prints the old and
new version of each input. Packages of architecture all or of the host
architecture use the host's package lists (run 'sudo apt-get update' first);
other architectures use private package lists in the cache, refreshed here.

Options:
  --add PACKAGE:ARCH    Add a new input named PACKAGE, ARCH one of ${ARCHITECTURES.join(', ')};
                        creates the lockfile if it does not exist; without
                        --input, only the added inputs are resolved
${SHARED_OPTIONS_HELP}`,
  run: runLockUpdate,
};

const lockFetchCommand: Command = {
  name: ['lock', 'fetch'],
  summary: 'Download and verify the pinned inputs into the download cache',
  help: `Usage: qwamos-build lock fetch [--input NAME]... [--offline] [OPTIONS]

Downloads each pinned .deb with apt-get download unless the cache has it,
checks its SHA-256 against the lockfile and prints its cache path. Cache hits
are hashed again. Never changes the lockfile.

Options:
  --offline             Check the cache only and run no download
${SHARED_OPTIONS_HELP}`,
  run: runLockFetch,
};

const lockGroupCommand: Command = {
  name: ['lock'],
  summary: 'Pin and fetch the build inputs (lock update, lock fetch)',
  help: `Usage: qwamos-build lock SUBCOMMAND [OPTIONS]

Subcommands:
  lock update           ${lockUpdateCommand.summary}
  lock fetch            ${lockFetchCommand.summary}

Run 'qwamos-build lock SUBCOMMAND --help' for the options of one subcommand.`,
  async run(argv) {
    throw new QwamosError('USAGE', `lock: unknown subcommand '${argv.join(' ')}'; expected 'lock update' or 'lock fetch'`);
  },
};

export const LOCK_COMMANDS: Command[] = [lockGroupCommand, lockUpdateCommand, lockFetchCommand];

const sharedOptions = {
  input: { type: 'string', multiple: true },
  lockfile: { type: 'string' },
  'cache-dir': { type: 'string' },
  json: { type: 'boolean' },
} as const;

interface InputChange {
  name: string;
  status: 'added' | 'updated' | 'unchanged';
  old: Pick<LockedInput, 'version' | 'sha256'> | null;
  new: LockedInput;
  path: string;
}

async function runLockUpdate(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs('lock update', argv, { ...sharedOptions, add: { type: 'string', multiple: true } });
  const lockfilePath = values.lockfile ? path.resolve(values.lockfile) : defaultLockfilePath();
  const cacheDir = resolveCacheDir(values['cache-dir']);
  const additions = (values.add ?? []).map(parseAddition);

  const creating = additions.length > 0 && values.input === undefined && !(await fileExists(lockfilePath));
  const existing = creating ? undefined : await loadLockfile(lockfilePath);
  const suite = existing?.suite ?? (await readHostSuite());
  const requests = selectUpdateRequests(existing, values.input ?? [], additions, lockfilePath);

  const changes: InputChange[] = [];
  for (const request of requests) {
    const resolved = await resolveCurrentInput(request, { cacheDir, suite, onProgress: printProgress });
    const old = existing?.inputs.find((input) => input.name === request.name);
    const status = !old ? 'added' : sameInput(old, resolved.entry) ? 'unchanged' : 'updated';
    changes.push({ name: request.name, status, old: old ? { version: old.version, sha256: old.sha256 } : null, new: resolved.entry, path: resolved.path });
  }

  const updated: Lockfile = {
    lockfileVersion: LOCKFILE_VERSION,
    suite,
    inputs: mergeInputs(existing?.inputs ?? [], changes.map((change) => change.new)),
  };
  const written = !existing || changes.some((change) => change.status !== 'unchanged');
  if (written) await writeLockfile(lockfilePath, updated);

  if (values.json) {
    printJson({ ok: true, lockfile: lockfilePath, written, cacheDir, inputs: changes });
  } else {
    for (const change of changes) process.stdout.write(`${describeChange(change)}\n`);
    process.stdout.write(written ? `wrote ${lockfilePath}\n` : `${lockfilePath} is up to date\n`);
  }
  return 0;
}

async function runLockFetch(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs('lock fetch', argv, { ...sharedOptions, offline: { type: 'boolean' } });
  const lockfilePath = values.lockfile ? path.resolve(values.lockfile) : defaultLockfilePath();
  const cacheDir = resolveCacheDir(values['cache-dir']);
  const lockfile = await loadLockfile(lockfilePath);
  const inputs = values.input ? values.input.map((name) => findLockedInput(lockfile, name, lockfilePath)) : lockfile.inputs;

  const fetched: Array<{ input: LockedInput; result: FetchResult }> = [];
  const missing: QwamosError[] = [];
  for (const input of inputs) {
    try {
      const result = await fetchInputWithSource(input, { cacheDir, offline: values.offline ?? false, onProgress: printProgress });
      fetched.push({ input, result });
    } catch (error) {
      if (!isQwamosError(error, 'OFFLINE_MISSING')) throw error;
      missing.push(error);
    }
  }
  if (missing.length === 1 && missing[0]) throw missing[0];
  if (missing.length > 1) {
    const names = missing.map((error) => String(error.data.input)).join(', ');
    throw new QwamosError('OFFLINE_MISSING', `inputs ${names} are not in the download cache ${cacheDir}; run 'qwamos-build lock fetch' while online, or run without --offline`, {
      details: missing.map((error) => error.message),
      data: { inputs: missing.map((error) => error.data.input), cacheDir },
    });
  }

  if (values.json) {
    const rows = fetched.map(({ input, result }) => ({ name: input.name, version: input.version, architecture: input.architecture, sha256: input.sha256, size: input.size, source: result.source, path: result.path }));
    printJson({ ok: true, lockfile: lockfilePath, cacheDir, inputs: rows });
  } else {
    const rows = fetched.map(({ input, result }) => [input.name, input.version, input.architecture, result.source, input.sha256, result.path]);
    process.stdout.write(`${formatTable(['INPUT', 'VERSION', 'ARCH', 'SOURCE', 'SHA256', 'PATH'], rows)}\n`);
  }
  return 0;
}

/** Parses a --add value PACKAGE:ARCH into a request named after the package. */
function parseAddition(value: string): InputRequest {
  const match = /^([a-z0-9][a-z0-9.+-]+):([a-z0-9]+)$/.exec(value);
  const architecture = match?.[2] as DebianArchitecture | undefined;
  if (!match?.[1] || !architecture || !ARCHITECTURES.includes(architecture)) {
    throw new QwamosError('USAGE', `lock update: --add '${value}' is invalid; expected PACKAGE:ARCH with ARCH one of ${ARCHITECTURES.join(', ')}, such as busybox-static:arm64`);
  }
  return { name: match[1], package: match[1], architecture };
}

/**
 * Lists the inputs to resolve: the inputs named with --input, else all
 * existing inputs unless --add is given, then the additions.
 */
function selectUpdateRequests(existing: Lockfile | undefined, names: string[], additions: InputRequest[], lockfilePath: string): InputRequest[] {
  const toRequest = (input: LockedInput): InputRequest => ({ name: input.name, package: input.package, architecture: input.architecture });
  let selected: InputRequest[] = [];
  if (existing && names.length > 0) {
    selected = names.map((name) => toRequest(findLockedInput(existing, name, lockfilePath)));
  } else if (existing && additions.length === 0) {
    selected = existing.inputs.map(toRequest);
  }

  for (const addition of additions) {
    if (existing?.inputs.some((input) => input.name === addition.name) || selected.some((request) => request.name === addition.name)) {
      throw new QwamosError('USAGE', `lock update: input ${addition.name} is already in ${lockfilePath}; update it with --input ${addition.name}`);
    }
    selected.push(addition);
  }
  return selected;
}

/** Replaces entries of `current` by name and appends entries it lacks, keeping the file order. */
function mergeInputs(current: LockedInput[], resolved: LockedInput[]): LockedInput[] {
  const byName = new Map(resolved.map((entry) => [entry.name, entry]));
  const merged = current.map((input) => byName.get(input.name) ?? input);
  const known = new Set(current.map((input) => input.name));
  return [...merged, ...resolved.filter((entry) => !known.has(entry.name))];
}

function sameInput(a: LockedInput, b: LockedInput): boolean {
  return a.version === b.version && a.sha256 === b.sha256 && a.size === b.size && a.file === b.file && a.archive === b.archive;
}

function describeChange(change: InputChange): string {
  const next = `${change.new.version} (sha256 ${change.new.sha256.slice(0, 16)}…)`;
  if (change.status === 'added') return `${change.name}: added ${next}`;
  if (change.status === 'unchanged') return `${change.name}: unchanged ${next}`;
  return `${change.name}: ${change.old?.version} (sha256 ${change.old?.sha256.slice(0, 16)}…) → ${next}`;
}

/** Reads the Debian codename (VERSION_CODENAME) of the host from /etc/os-release. */
async function readHostSuite(): Promise<string> {
  const osRelease = await readFile('/etc/os-release', 'utf8').catch(() => '');
  const codename = /^VERSION_CODENAME=["']?([a-z]+)["']?$/m.exec(osRelease)?.[1];
  if (!codename) {
    throw new QwamosError('INPUT_INVALID', '/etc/os-release has no VERSION_CODENAME, so the Debian suite of a new lockfile is unknown; run lock update on a Debian host');
  }
  return codename;
}

async function fileExists(filePath: string): Promise<boolean> {
  return access(filePath).then(() => true, () => false);
}

function printProgress(message: string): void {
  process.stderr.write(`${message}\n`);
}
