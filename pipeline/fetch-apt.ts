/**
 * Fetching pinned Debian packages through APT into the download cache.
 *
 * Packages of architecture `all` or of the host architecture use the
 * host's APT configuration and package lists. Other architectures (arm64
 * on an amd64 host) use APT options that switch the architecture and point
 * the package lists, binary caches and dpkg status at folders in the
 * download cache. So no `dpkg --add-architecture` is needed, and the host's
 * package lists and caches are not written. Both read the host's APT
 * sources.
 */
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { runTool } from '../core/exec.js';
import { readDebIdentity } from './deb.js';
import { createDownloadFolder, findCachedFile, storeVerifiedFile, type DigestSubject } from './download-cache.js';
import { archiveBelongsToSuite, type DebianArchitecture, type LockedInput } from './lockfile.js';

export interface FetchOptions {
  /** Download cache folder, from `resolveCacheDir`. */
  cacheDir: string;
  /** Use only the cache; a missing input is an OFFLINE_MISSING error. */
  offline?: boolean;
  /** Receives one line per step, for progress display. */
  onProgress?: (message: string) => void;
}

export interface FetchResult {
  /** Path of the verified .deb in the cache. */
  path: string;
  /** Whether the file was already cached or was downloaded now. */
  source: 'cache' | 'download';
}

/** A package version as the APT index describes it (`apt-cache show`). */
export interface ArchivePackage {
  package: string;
  version: string;
  architecture: string;
  /** Pool path, such as pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_arm64.deb. */
  filename: string;
  size: number;
  sha256: string;
}

/** The APT options to run with, and whether they use private package lists. */
interface AptContext {
  options: string[];
  /** Private package lists in the cache, which this module may update. */
  privateLists: boolean;
  architecture: string;
}

/** Messages of apt-cache are parsed, so they must not be translated. */
const APT_ENV = { LC_ALL: 'C' };

/** Fetches a locked input and returns the path of its verified .deb in the cache. */
export async function fetchInput(input: LockedInput, options: FetchOptions): Promise<string> {
  return (await fetchInputWithSource(input, options)).path;
}

/**
 * Fetches a locked input like `fetchInput` and also reports whether it was
 * a cache hit. A cache hit is hashed again; `--offline` never runs APT.
 */
export async function fetchInputWithSource(input: LockedInput, options: FetchOptions): Promise<FetchResult> {
  const progress = options.onProgress ?? (() => undefined);
  const subject: DigestSubject = { input: input.name, sha256: input.sha256 };

  const cachedPath = await findCachedFile(options.cacheDir, subject);
  if (cachedPath) {
    progress(`${input.name}: verified cache entry ${cachedPath}`);
    return { path: cachedPath, source: 'cache' };
  }

  if (options.offline) {
    throw new QwamosError('OFFLINE_MISSING', `input ${input.name} (${input.package} ${input.version} ${input.architecture}) is not in the download cache ${options.cacheDir}; run 'qwamos-build lock fetch --input ${input.name}' while online, or run without --offline`, {
      data: { input: input.name, cacheDir: options.cacheDir },
    });
  }

  const context = await aptContextFor(input.architecture, options.cacheDir);
  const archivePackage = await findPinnedVersion(context, input, progress);
  if (archivePackage.sha256 !== input.sha256) {
    throw new QwamosError('CHECKSUM_MISMATCH', `input ${input.name}: the APT index lists ${input.package} ${input.version} ${input.architecture} with sha256 ${archivePackage.sha256}, but the lockfile expects sha256 ${input.sha256}; check the host's APT sources, or review the change and run 'qwamos-build lock update --input ${input.name}'`, {
      data: { input: input.name, expected: input.sha256, actual: archivePackage.sha256 },
    });
  }

  progress(`${input.name}: downloading ${input.package} ${input.version} ${input.architecture} (${archivePackage.size} bytes)`);
  const downloadedPath = await downloadToCache(context, archivePackage, subject, options.cacheDir);
  progress(`${input.name}: stored ${downloadedPath}`);
  return { path: downloadedPath, source: 'download' };
}

/** A request to pin the current candidate version of a package. */
export interface InputRequest {
  name: string;
  package: string;
  architecture: DebianArchitecture;
}

export interface ResolvedInput {
  entry: LockedInput;
  /** Path of the downloaded, verified .deb in the cache. */
  path: string;
}

/**
 * Resolves the candidate version of a package for `lock update`. Refreshes
 * private package lists, reads the candidate with `apt-cache policy` and
 * checks that it comes from release `suite`. Then downloads it into the
 * cache unless it is there, verifies it against the SHA-256 of the signed
 * APT index and checks its control fields. Returns the new lockfile entry.
 */
export async function resolveCurrentInput(request: InputRequest, options: { cacheDir: string; suite: string; onProgress?: (message: string) => void }): Promise<ResolvedInput> {
  const progress = options.onProgress ?? (() => undefined);
  const context = await aptContextFor(request.architecture, options.cacheDir);
  await ensurePackageLists(context, { refresh: context.privateLists, onProgress: progress });

  const candidate = await readCandidate(context, request);
  if (!archiveBelongsToSuite(candidate.archive, options.suite)) {
    throw new QwamosError('PACKAGE_UNAVAILABLE', `input ${request.name}: the candidate ${request.package} ${candidate.version} comes from ${candidate.archive}, but the lockfile pins suite ${options.suite}; run lock update on a host whose APT sources are for ${options.suite}`, {
      data: { input: request.name, archive: candidate.archive, suite: options.suite },
    });
  }

  const archivePackage = await showPackageVersion(context, request.package, candidate.version, request.architecture);
  if (!archivePackage) {
    throw unavailableError(context, { name: request.name, package: request.package, version: candidate.version, architecture: request.architecture });
  }

  const subject: DigestSubject = { input: request.name, sha256: archivePackage.sha256 };
  let cachedPath = await findCachedFile(options.cacheDir, subject);
  if (!cachedPath) {
    progress(`${request.name}: downloading ${request.package} ${archivePackage.version} ${request.architecture} (${archivePackage.size} bytes)`);
    cachedPath = await downloadToCache(context, archivePackage, subject, options.cacheDir);
  }
  await checkDebIdentity(cachedPath, request, archivePackage.version);

  const entry: LockedInput = {
    name: request.name,
    kind: 'debian-package',
    package: request.package,
    version: archivePackage.version,
    architecture: request.architecture,
    archive: candidate.archive,
    file: path.posix.basename(archivePackage.filename),
    size: archivePackage.size,
    sha256: archivePackage.sha256,
  };
  return { entry, path: cachedPath };
}

/** Returns the Debian architecture of the host, such as amd64. */
export async function hostArchitecture(): Promise<string> {
  const { stdout } = await runTool('dpkg', ['--print-architecture']);
  return stdout.trim();
}

/**
 * Chooses the host's APT state for `all` and host-architecture packages,
 * and private state under `<cacheDir>/apt/<architecture>/` for the rest.
 */
async function aptContextFor(architecture: string, cacheDir: string): Promise<AptContext> {
  const host = await hostArchitecture();
  if (architecture === 'all' || architecture === host) {
    return { options: [], privateLists: false, architecture };
  }

  const stateRoot = path.join(cacheDir, 'apt', architecture);
  const listsDir = path.join(stateRoot, 'lists');
  const binaryCacheDir = path.join(stateRoot, 'cache');
  await mkdir(path.join(listsDir, 'partial'), { recursive: true });
  await mkdir(binaryCacheDir, { recursive: true });

  const options = [
    // Resolve package names for this architecture instead of the host's.
    '-o', `APT::Architecture=${architecture}`,
    // Download only the package lists of this architecture.
    '-o', `APT::Architectures=${architecture}`,
    // Private package lists, so `update` leaves the host's lists alone.
    '-o', `Dir::State::Lists=${listsDir}`,
    // Private pkgcache.bin and srcpkgcache.bin, which would otherwise be rewritten in /var/cache/apt.
    '-o', `Dir::Cache=${binaryCacheDir}`,
    // Empty dpkg status: packages installed on the host play no part in a download.
    '-o', 'Dir::State::status=/dev/null',
  ];
  return { options, privateLists: true, architecture };
}

/**
 * Ensures that package lists exist. Private lists are downloaded with
 * `apt-get update` when missing or when `refresh` is set. Missing host
 * lists raise an error with the `apt-get update` fix instead, because
 * updating them needs root.
 */
async function ensurePackageLists(context: AptContext, options: { refresh: boolean; onProgress: (message: string) => void }): Promise<void> {
  if (context.privateLists) {
    if (options.refresh || (await countPackageIndexes(context)) === 0) {
      // NOTE: apt-get locks the lists folder, so a second process updating the
      // same cache folder at the same time fails with COMMAND_FAILED.
      options.onProgress(`updating the ${context.architecture} package lists with apt-get update`);
      await runTool('apt-get', [...context.options, 'update'], { env: APT_ENV });
    }
    return;
  }

  if ((await countPackageIndexes(context)) === 0) {
    throw new QwamosError('PACKAGE_UNAVAILABLE', "the host has no APT package lists (apt-get update was never run); run 'sudo apt-get update' and try again", {
      data: { architecture: context.architecture },
    });
  }
}

/** Counts the Packages index files present in the package lists. */
async function countPackageIndexes(context: AptContext): Promise<number> {
  const { stdout } = await runTool('apt-get', [...context.options, 'indextargets', '--format', '$(FILENAME)', 'Created-By: Packages'], { env: APT_ENV });
  return stdout.split('\n').filter((line) => line.trim() !== '').length;
}

/**
 * Looks up the pinned version in the APT index. Private lists are updated
 * once and searched again when the version is missing, because they may be
 * older than the lockfile.
 */
async function findPinnedVersion(context: AptContext, input: LockedInput, progress: (message: string) => void): Promise<ArchivePackage> {
  await ensurePackageLists(context, { refresh: false, onProgress: progress });

  let archivePackage = await showPackageVersion(context, input.package, input.version, input.architecture);
  if (!archivePackage && context.privateLists) {
    await ensurePackageLists(context, { refresh: true, onProgress: progress });
    archivePackage = await showPackageVersion(context, input.package, input.version, input.architecture);
  }

  if (!archivePackage) throw unavailableError(context, input);
  return archivePackage;
}

function unavailableError(context: AptContext, input: Pick<LockedInput, 'name' | 'package' | 'version' | 'architecture'>): QwamosError {
  const listsFix = context.privateLists ? '' : "run 'sudo apt-get update' if the host's package lists are old; ";
  return new QwamosError('PACKAGE_UNAVAILABLE', `input ${input.name}: ${input.package} ${input.version} ${input.architecture} is not in the APT package lists; ${listsFix}if the Debian archive has dropped that version, review and pin the current one with 'qwamos-build lock update --input ${input.name}'`, {
    data: { input: input.name, package: input.package, version: input.version, architecture: input.architecture },
  });
}

/** Reads one version's index stanza with `apt-cache show`; undefined when APT does not know it. */
async function showPackageVersion(context: AptContext, packageName: string, version: string, architecture: string): Promise<ArchivePackage | undefined> {
  const { stdout } = await runTool('apt-cache', [...context.options, 'show', `${packageName}=${version}`], { env: APT_ENV });

  for (const stanza of stdout.split(/\n\s*\n/)) {
    const fields = parseControlFields(stanza);
    if (fields.get('Package') !== packageName || fields.get('Architecture') !== architecture) continue;

    const size = Number(fields.get('Size'));
    const sha256 = fields.get('SHA256');
    const filename = fields.get('Filename');
    if (!Number.isSafeInteger(size) || !sha256 || !filename) continue;

    return { package: packageName, version: fields.get('Version') ?? version, architecture, filename, size, sha256 };
  }
  return undefined;
}

/** Parses single-line fields of a Debian control stanza; continuation lines are skipped. */
function parseControlFields(stanza: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of stanza.split('\n')) {
    const match = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
    if (match?.[1] && match[2] !== undefined) fields.set(match[1], match[2].trim());
  }
  return fields;
}

/** Reads the candidate version and the archive it comes from out of `apt-cache policy`. */
async function readCandidate(context: AptContext, request: InputRequest): Promise<{ version: string; archive: string }> {
  const { stdout } = await runTool('apt-cache', [...context.options, 'policy', request.package], { env: APT_ENV });

  const version = /^\s+Candidate:\s+(\S+)\s*$/m.exec(stdout)?.[1];
  if (!version || version === '(none)') {
    throw new QwamosError('PACKAGE_UNAVAILABLE', `input ${request.name}: APT has no candidate version of ${request.package} for ${request.architecture}; check the package name and that the host's APT sources include it`, {
      data: { input: request.name, package: request.package },
    });
  }

  const archive = archiveOfVersion(stdout, version);
  if (!archive) {
    throw new QwamosError('PACKAGE_UNAVAILABLE', `input ${request.name}: apt-cache policy names no archive for ${request.package} ${version}; expected a line such as '500 http://deb.debian.org/debian bookworm/main amd64 Packages'`, {
      data: { input: request.name, package: request.package, version },
    });
  }
  return { version, archive };
}

/**
 * Finds the first archive (suite/component) listed under `version` in the
 * version table of `apt-cache policy`. Version lines look like
 * ` *** 6.1.192-3 500` and archive lines like
 * `        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages`.
 */
export function archiveOfVersion(policyOutput: string, version: string): string | undefined {
  let inVersion = false;
  for (const line of policyOutput.split('\n')) {
    const versionLine = /^ (?:\*\*\*| {3}) (\S+) -?\d+$/.exec(line);
    if (versionLine) {
      inVersion = versionLine[1] === version;
      continue;
    }

    const archiveLine = /^\s+-?\d+ \S+ (\S+\/\S+) \S+ Packages$/.exec(line);
    if (inVersion && archiveLine?.[1]) return archiveLine[1];
  }
  return undefined;
}

/** Downloads `archivePackage` with `apt-get download` into a cache download folder and stores it verified. */
async function downloadToCache(context: AptContext, archivePackage: ArchivePackage, subject: DigestSubject, cacheDir: string): Promise<string> {
  const folder = await createDownloadFolder(cacheDir);
  try {
    // apt-get download writes into the current folder. The exact
    // PACKAGE=VERSION request means APT can never substitute another version.
    await runTool('apt-get', [...context.options, 'download', `${archivePackage.package}=${archivePackage.version}`], { cwd: folder, env: APT_ENV });

    const debFiles = (await readdir(folder)).filter((name) => name.endsWith('.deb'));
    const downloaded = debFiles[0];
    if (debFiles.length !== 1 || !downloaded) {
      throw new QwamosError('COMMAND_FAILED', `apt-get download ${archivePackage.package}=${archivePackage.version} left ${debFiles.length} .deb files in ${folder}; expected exactly one`, {
        data: { input: subject.input, files: debFiles },
      });
    }

    const downloadedPath = path.join(folder, downloaded);
    const { size } = await stat(downloadedPath);
    if (size !== archivePackage.size) {
      throw new QwamosError('CHECKSUM_MISMATCH', `input ${subject.input}: downloaded ${downloaded} is ${size} bytes, but the APT index lists ${archivePackage.size} bytes; try again, and check the mirror in the host's APT sources if it repeats`, {
        data: { input: subject.input, expectedSize: archivePackage.size, actualSize: size },
      });
    }

    return await storeVerifiedFile(cacheDir, subject, downloadedPath);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

/** Checks that a downloaded .deb names the requested package, version and architecture. */
async function checkDebIdentity(debPath: string, request: InputRequest, version: string): Promise<void> {
  const identity = await readDebIdentity(debPath);
  if (identity.package !== request.package || identity.version !== version || identity.architecture !== request.architecture) {
    throw new QwamosError('VERIFY_FAILED', `input ${request.name}: ${debPath} is ${identity.package} ${identity.version} ${identity.architecture}, expected ${request.package} ${version} ${request.architecture}`, {
      data: { input: request.name, expected: { package: request.package, version, architecture: request.architecture }, actual: identity },
    });
  }
}
