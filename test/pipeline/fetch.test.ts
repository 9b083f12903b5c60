import { randomBytes } from 'node:crypto';
import { access, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../cli/main.js';
import { QwamosError } from '../../core/errors.js';
import { runTool } from '../../core/exec.js';
import { extractDebMember, readDebIdentity } from '../../pipeline/deb.js';
import {
  CACHE_DIR_ENV,
  cachedFilePath,
  createDownloadFolder,
  findCachedFile,
  resolveCacheDir,
  sha256File,
  storeVerifiedFile,
} from '../../pipeline/download-cache.js';
import { fetchInput, fetchInputWithSource } from '../../pipeline/fetch-apt.js';
import { LOCKFILE_NAME, findLockedInput, loadLockfile, type LockedInput } from '../../pipeline/lockfile.js';

const REPOSITORY_LOCKFILE = path.resolve(process.cwd(), LOCKFILE_NAME);

/** ELF identification and header offsets (System V ABI, ELF-64, little-endian). */
const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];
const EI_CLASS = 4;
const ELFCLASS64 = 2;
const EI_DATA = 5;
const ELFDATA2LSB = 1;
/** e_machine: 2 bytes at offset 18. */
const E_MACHINE_OFFSET = 18;
const EM_AARCH64 = 183;

const FIXTURE_CONTROL = {
  package: 'qwamos-test-fixture',
  version: '1:2.0-1',
  architecture: 'all',
};

let workDir: string;
let fixtureDeb: string;
let fixturePayload: Buffer;

/** Returns the digest that the reference tool sha256sum prints for a file. */
async function sha256sum(filePath: string): Promise<string> {
  const { stdout } = await runTool('sha256sum', [filePath]);
  return stdout.split(' ')[0] ?? '';
}

async function exists(filePath: string): Promise<boolean> {
  return access(filePath).then(() => true, () => false);
}

async function expectError(promise: Promise<unknown>): Promise<QwamosError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(QwamosError);
  return error as QwamosError;
}

/** Builds a small .deb with dpkg-deb: one payload file, one symbolic link and one folder. */
async function buildFixtureDeb(): Promise<void> {
  const root = path.join(workDir, 'fixture-root');
  await mkdir(path.join(root, 'DEBIAN'), { recursive: true });
  await mkdir(path.join(root, 'usr', 'share', 'qwamos-fixture'), { recursive: true });
  await mkdir(path.join(root, 'bin'), { recursive: true });

  await writeFile(path.join(root, 'DEBIAN', 'control'), [
    `Package: ${FIXTURE_CONTROL.package}`,
    `Version: ${FIXTURE_CONTROL.version}`,
    `Architecture: ${FIXTURE_CONTROL.architecture}`,
    'Maintainer: QWAMOS tests <tests@example.invalid>',
    'Description: test fixture for .deb unpacking',
    '',
  ].join('\n'));
  fixturePayload = randomBytes(200_000);
  await writeFile(path.join(root, 'usr', 'share', 'qwamos-fixture', 'payload.bin'), fixturePayload);
  await symlink('../usr/share/qwamos-fixture/payload.bin', path.join(root, 'bin', 'payload-link'));

  fixtureDeb = path.join(workDir, 'qwamos-test-fixture.deb');
  await runTool('dpkg-deb', ['--root-owner-group', '--build', root, fixtureDeb]);
}

/** A lockfile entry for the fixture .deb; `sha256` may be set wrong on purpose. */
function fixtureEntry(sha256: string): LockedInput {
  return {
    name: 'test-fixture',
    kind: 'debian-package',
    package: FIXTURE_CONTROL.package,
    version: FIXTURE_CONTROL.version,
    architecture: 'all',
    archive: 'bookworm/main',
    file: 'qwamos-test-fixture_2.0-1_all.deb',
    size: 1,
    sha256,
  };
}

/** Lists the host's APT package list files, to show that private lists leave them alone. */
async function hostListFiles(): Promise<string[]> {
  const { stdout } = await runTool('apt-config', ['shell', 'LISTS', 'Dir::State::Lists/d']);
  const listsDir = /LISTS='([^']+)'/.exec(stdout)?.[1] ?? '/var/lib/apt/lists';
  return (await readdir(listsDir)).sort();
}

async function runCli(argv: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const outputSpy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => { stdout.push(String(chunk)); return true; });
  const errorSpy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => { stderr.push(String(chunk)); return true; });
  try {
    const status = await main(argv);
    return { status, stdout: stdout.join(''), stderr: stderr.join('') };
  } finally {
    outputSpy.mockRestore();
    errorSpy.mockRestore();
  }
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(os.tmpdir(), 'qwamos-fetch-'));
  await buildFixtureDeb();
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe('resolveCacheDir', () => {
  const home = os.homedir();
  const cases: Array<{ name: string; explicit?: string; env: NodeJS.ProcessEnv; expected: string }> = [
    { name: 'option first', explicit: '/srv/cache', env: { [CACHE_DIR_ENV]: '/env/cache', XDG_CACHE_HOME: '/xdg' }, expected: '/srv/cache' },
    { name: 'environment variable second', env: { [CACHE_DIR_ENV]: '/env/cache', XDG_CACHE_HOME: '/xdg' }, expected: '/env/cache' },
    { name: 'XDG_CACHE_HOME third', env: { XDG_CACHE_HOME: '/xdg' }, expected: '/xdg/qwamos-build' },
    { name: 'relative XDG_CACHE_HOME ignored', env: { XDG_CACHE_HOME: 'relative' }, expected: path.join(home, '.cache', 'qwamos-build') },
    { name: 'home folder last', env: {}, expected: path.join(home, '.cache', 'qwamos-build') },
  ];

  for (const testCase of cases) {
    it(`uses ${testCase.name}`, () => {
      expect(resolveCacheDir(testCase.explicit, testCase.env)).toBe(testCase.expected);
    });
  }
});

describe('download cache', () => {
  it('hashes files like sha256sum', async () => {
    const file = path.join(workDir, 'random.bin');
    await writeFile(file, randomBytes(3_000_001));
    expect(await sha256File(file)).toBe(await sha256sum(file));
  });

  it('rejects a path for a non-digest', () => {
    expect(() => cachedFilePath(workDir, '../../etc/passwd')).toThrow(/not a SHA-256 digest/);
  });

  it('stores a verified download by digest', async () => {
    const cacheDir = path.join(workDir, 'store-ok');
    const folder = await createDownloadFolder(cacheDir);
    const downloaded = path.join(folder, 'fixture.deb');
    await writeFile(downloaded, await readFile(fixtureDeb));
    const digest = await sha256sum(fixtureDeb);

    const stored = await storeVerifiedFile(cacheDir, { input: 'test-fixture', sha256: digest }, downloaded);

    expect(stored).toBe(path.join(cacheDir, 'downloads', 'sha256', digest));
    expect(await sha256sum(stored)).toBe(digest);
    expect(await exists(downloaded)).toBe(false);
  });

  it('rejects a download with the wrong digest', async () => {
    const cacheDir = path.join(workDir, 'store-mismatch');
    const folder = await createDownloadFolder(cacheDir);
    const downloaded = path.join(folder, 'fixture.deb');
    await writeFile(downloaded, await readFile(fixtureDeb));
    const expected = 'a'.repeat(64);
    const actual = await sha256sum(fixtureDeb);

    const error = await expectError(storeVerifiedFile(cacheDir, { input: 'test-fixture', sha256: expected }, downloaded));

    expect(error.code).toBe('CHECKSUM_MISMATCH');
    expect(error.message).toContain('input test-fixture');
    expect(error.message).toContain(`expects sha256 ${expected}`);
    expect(error.message).toContain(`has sha256 ${actual}`);
    expect(error.data).toMatchObject({ input: 'test-fixture', expected, actual });
    expect(await exists(downloaded)).toBe(false);
    expect(await exists(cachedFilePath(cacheDir, expected))).toBe(false);
  });

  it('deletes a corrupt cache entry and names it', async () => {
    const cacheDir = path.join(workDir, 'corrupt');
    const digest = await sha256sum(fixtureDeb);
    const entryPath = cachedFilePath(cacheDir, digest);
    await mkdir(path.dirname(entryPath), { recursive: true });
    const corrupt = await readFile(fixtureDeb);
    corrupt[100] = corrupt[100]! ^ 0xff;
    await writeFile(entryPath, corrupt);
    const actual = await sha256sum(entryPath);

    const error = await expectError(fetchInput(fixtureEntry(digest), { cacheDir, offline: true }));

    expect(error.code).toBe('CHECKSUM_MISMATCH');
    expect(error.message).toContain(`cache entry ${entryPath}`);
    expect(error.message).toContain('input test-fixture');
    expect(error.message).toContain(`expected sha256 ${digest}`);
    expect(error.message).toContain(`actual sha256 ${actual}`);
    expect(await exists(entryPath)).toBe(false);
  });

  it('returns a verified cache hit offline', async () => {
    const cacheDir = path.join(workDir, 'hit');
    const digest = await sha256sum(fixtureDeb);
    const entryPath = cachedFilePath(cacheDir, digest);
    await mkdir(path.dirname(entryPath), { recursive: true });
    await writeFile(entryPath, await readFile(fixtureDeb));
    const messages: string[] = [];

    const result = await fetchInputWithSource(fixtureEntry(digest), { cacheDir, offline: true, onProgress: (message) => messages.push(message) });

    expect(result).toEqual({ path: entryPath, source: 'cache' });
    expect(messages).toEqual([`test-fixture: verified cache entry ${entryPath}`]);
  });

  it('names the input missing offline', async () => {
    const cacheDir = path.join(workDir, 'empty');
    const error = await expectError(fetchInput(fixtureEntry('b'.repeat(64)), { cacheDir, offline: true }));

    expect(error.code).toBe('OFFLINE_MISSING');
    expect(error.message).toContain(`input test-fixture (${FIXTURE_CONTROL.package} ${FIXTURE_CONTROL.version} all) is not in the download cache ${cacheDir}`);
    expect(error.message).toContain("run 'qwamos-build lock fetch --input test-fixture' while online");
  });

  it('removes stale download folders only', async () => {
    const cacheDir = path.join(workDir, 'stale');
    const temporaryRoot = path.join(cacheDir, 'downloads', 'tmp');
    const stale = path.join(temporaryRoot, '1-stale');
    const fresh = path.join(temporaryRoot, '2-fresh');
    await mkdir(stale, { recursive: true });
    await mkdir(fresh, { recursive: true });
    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 60 * 60 * 1000);
    await utimes(stale, twoDaysAgo, twoDaysAgo);

    const created = await createDownloadFolder(cacheDir);

    expect(await exists(stale)).toBe(false);
    expect(await exists(fresh)).toBe(true);
    expect(path.dirname(created)).toBe(temporaryRoot);
  });
});

describe('extractDebMember', () => {
  it('extracts a file byte for byte', async () => {
    const destination = path.join(workDir, 'out', 'payload.bin');
    await extractDebMember(fixtureDeb, 'usr/share/qwamos-fixture/payload.bin', destination);
    expect((await readFile(destination)).equals(fixturePayload)).toBe(true);
  });

  it('accepts absolute and dot-slash paths', async () => {
    for (const member of ['/usr/share/qwamos-fixture/payload.bin', './usr/share/qwamos-fixture/payload.bin']) {
      const destination = path.join(workDir, 'out-forms', `${member.length}.bin`);
      await extractDebMember(fixtureDeb, member, destination);
      expect((await readFile(destination)).equals(fixturePayload)).toBe(true);
    }
  });

  it('names a missing member', async () => {
    const destination = path.join(workDir, 'out-missing', 'nothing');
    const error = await expectError(extractDebMember(fixtureDeb, 'usr/src/linux-source-6.1.tar.xz', destination));

    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain(`${fixtureDeb} does not contain /usr/src/linux-source-6.1.tar.xz`);
    expect(error.message).toContain('dpkg-deb --contents');
    expect(await exists(destination)).toBe(false);
    expect(await readdir(path.dirname(destination))).toEqual([]);
  });

  it('rejects a symbolic link member', async () => {
    const error = await expectError(extractDebMember(fixtureDeb, 'bin/payload-link', path.join(workDir, 'out-link', 'x')));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain('/bin/payload-link');
    expect(error.message).toContain('is not a regular file');
  });

  it('rejects a folder member', async () => {
    const error = await expectError(extractDebMember(fixtureDeb, 'usr/share', path.join(workDir, 'out-folder', 'x')));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain('/usr/share in');
  });

  it('rejects a path leaving the package', async () => {
    const error = await expectError(extractDebMember(fixtureDeb, '../../etc/passwd', path.join(workDir, 'out-escape', 'x')));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain("'../../etc/passwd' is not a file path inside a package");
  });

  it('reads the control fields', async () => {
    expect(await readDebIdentity(fixtureDeb)).toEqual(FIXTURE_CONTROL);
  });
});

describe('APT errors without network', () => {
  it('names a pinned version APT lacks', async () => {
    const entry: LockedInput = { ...fixtureEntry('c'.repeat(64)), name: 'old-source', package: 'linux-source-6.1', version: '6.1.0-0' };
    const error = await expectError(fetchInput(entry, { cacheDir: path.join(workDir, 'absent-version') }));

    expect(error.code).toBe('PACKAGE_UNAVAILABLE');
    expect(error.message).toContain('input old-source: linux-source-6.1 6.1.0-0 all is not in the APT package lists');
    expect(error.message).toContain("'sudo apt-get update'");
    expect(error.message).toContain("'qwamos-build lock update --input old-source'");
  });

  it('says to run apt-get update without host lists', async () => {
    const emptyLists = path.join(workDir, 'no-lists');
    await mkdir(path.join(emptyLists, 'partial'), { recursive: true });
    const aptConfig = path.join(workDir, 'no-lists.conf');
    await writeFile(aptConfig, `Dir::State::Lists "${emptyLists}";\n`);

    const saved = process.env.APT_CONFIG;
    process.env.APT_CONFIG = aptConfig;
    try {
      const error = await expectError(fetchInput(fixtureEntry('d'.repeat(64)), { cacheDir: path.join(workDir, 'no-lists-cache') }));
      expect(error.code).toBe('PACKAGE_UNAVAILABLE');
      expect(error.message).toContain("the host has no APT package lists (apt-get update was never run); run 'sudo apt-get update'");
    } finally {
      if (saved === undefined) delete process.env.APT_CONFIG;
      else process.env.APT_CONFIG = saved;
    }
  });

  it('reports an offline miss through the CLI', async () => {
    const result = await runCli(['lock', 'fetch', '--offline', '--input', 'busybox-static', '--lockfile', REPOSITORY_LOCKFILE, '--cache-dir', path.join(workDir, 'cli-empty')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('input busybox-static (busybox-static');
    expect(result.stderr).toContain("run 'qwamos-build lock fetch --input busybox-static' while online");
  });
});

// These tests download busybox-static for arm64 (about 0.8 MB) and the
// arm64 package lists (about 9 MB) from the Debian archive.
describe('busybox-static arm64 from the Debian archive', () => {
  let cacheDir: string;
  let busybox: LockedInput;
  let listsBefore: string[];

  beforeAll(async () => {
    cacheDir = path.join(workDir, 'real-cache');
    busybox = findLockedInput(await loadLockfile(REPOSITORY_LOCKFILE), 'busybox-static');
    listsBefore = await hostListFiles();
  });

  it('downloads the pinned .deb with apt-get', async () => {
    const messages: string[] = [];
    const result = await fetchInputWithSource(busybox, { cacheDir, onProgress: (message) => messages.push(message) });

    expect(result.source).toBe('download');
    expect(result.path).toBe(cachedFilePath(cacheDir, busybox.sha256));
    expect(await sha256sum(result.path)).toBe(busybox.sha256);
    expect((await lstat(result.path)).size).toBe(busybox.size);
    expect(messages.some((message) => message.startsWith('busybox-static: downloading busybox-static'))).toBe(true);
  });

  it('leaves the host package lists alone', async () => {
    expect(await hostListFiles()).toEqual(listsBefore);
    expect(await exists(path.join(cacheDir, 'apt', 'arm64', 'lists'))).toBe(true);
  });

  it('has the control fields of the lockfile', async () => {
    const debPath = await fetchInput(busybox, { cacheDir, offline: true });
    expect(await readDebIdentity(debPath)).toEqual({ package: busybox.package, version: busybox.version, architecture: 'arm64' });
  });

  it('contains an aarch64 ELF busybox', async () => {
    const debPath = await fetchInput(busybox, { cacheDir, offline: true });
    const binary = path.join(workDir, 'busybox');
    await extractDebMember(debPath, 'bin/busybox', binary);
    const header = await readFile(binary);

    expect([...header.subarray(0, 4)]).toEqual(ELF_MAGIC);
    expect(header[EI_CLASS]).toBe(ELFCLASS64);
    expect(header[EI_DATA]).toBe(ELFDATA2LSB);
    expect(header.readUInt16LE(E_MACHINE_OFFSET)).toBe(EM_AARCH64);

    const { stdout } = await runTool('readelf', ['--file-header', binary], { env: { LC_ALL: 'C' } });
    expect(stdout).toMatch(/Machine:\s+AArch64/);
  });

  it('rejects an index digest that differs from the pin', async () => {
    const wrong = '0'.repeat(64);
    const error = await expectError(fetchInput({ ...busybox, sha256: wrong }, { cacheDir }));

    expect(error.code).toBe('CHECKSUM_MISMATCH');
    expect(error.message).toContain('input busybox-static');
    expect(error.message).toContain(`the lockfile expects sha256 ${wrong}`);
    expect(error.message).toContain(`with sha256 ${busybox.sha256}`);
  });

  it('pins the current version with lock update', async () => {
    const lockfilePath = path.join(workDir, 'new', LOCKFILE_NAME);
    const first = await runCli(['lock', 'update', '--add', 'busybox-static:arm64', '--lockfile', lockfilePath, '--cache-dir', cacheDir, '--json']);
    expect(first.status).toBe(0);

    const report = JSON.parse(first.stdout) as { written: boolean; inputs: Array<{ status: string; path: string }> };
    const entry = findLockedInput(await loadLockfile(lockfilePath), 'busybox-static');
    const debPath = report.inputs[0]!.path;
    const { stdout: version } = await runTool('dpkg-deb', ['--field', debPath, 'Version']);

    expect(report.written).toBe(true);
    expect(report.inputs[0]!.status).toBe('added');
    expect(entry.sha256).toBe(await sha256sum(debPath));
    expect(entry.size).toBe((await lstat(debPath)).size);
    expect(entry.version).toBe(version.trim());
    expect(entry.archive).toMatch(/^bookworm(-[a-z]+)?\/main$/);

    const second = await runCli(['lock', 'update', '--lockfile', lockfilePath, '--cache-dir', cacheDir]);
    expect(second.status).toBe(0);
    expect(second.stdout).toContain(`busybox-static: unchanged ${entry.version}`);
    expect(second.stdout).toContain('is up to date');
  });
});
