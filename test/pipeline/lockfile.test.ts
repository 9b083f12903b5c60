import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseDocument } from 'yaml';
import { main } from '../../cli/main.js';
import { QwamosError } from '../../core/errors.js';
import {
  LOCKFILE_NAME,
  findLockedInput,
  loadLockfile,
  parseLockfile,
  serializeLockfile,
  writeLockfile,
  type Lockfile,
} from '../../pipeline/lockfile.js';

const REPOSITORY_LOCKFILE = path.resolve(process.cwd(), LOCKFILE_NAME);

const VALID: Lockfile = {
  lockfileVersion: 1,
  suite: 'bookworm',
  inputs: [
    {
      name: 'linux-source-6.1',
      kind: 'debian-package',
      package: 'linux-source-6.1',
      version: '6.1.192-3',
      architecture: 'all',
      archive: 'bookworm-security/main',
      file: 'linux-source-6.1_6.1.192-3_all.deb',
      size: 139330232,
      sha256: '5259c57ca92092da39bd2ea803046da0e3c28f2b6a11ea20f6297468188ceb67',
    },
    {
      name: 'busybox-static',
      kind: 'debian-package',
      package: 'busybox-static',
      version: '1:1.35.0-4+deb12u1+b1',
      architecture: 'arm64',
      archive: 'bookworm/main',
      file: 'busybox-static_1.35.0-4+deb12u1+b1_arm64.deb',
      size: 822236,
      sha256: '732c9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5',
    },
  ],
};

/** Serializes VALID after `edit` changed a copy of it, bypassing validation. */
function mutated(edit: (document: Record<string, any>) => void): string {
  const copy = structuredClone(VALID) as unknown as Record<string, any>;
  edit(copy);
  return parseDocument(JSON.stringify(copy)).toString();
}

function parseError(text: string, fileName = 'broken.lock.yaml'): QwamosError {
  try {
    parseLockfile(text, fileName);
  } catch (error) {
    if (error instanceof QwamosError) return error;
    throw error;
  }
  throw new Error('parseLockfile accepted an invalid lockfile');
}

let temporaryDir: string;

beforeAll(async () => {
  temporaryDir = await mkdtemp(path.join(os.tmpdir(), 'qwamos-lockfile-'));
});

afterAll(async () => {
  await rm(temporaryDir, { recursive: true, force: true });
});

describe('repository lockfile', () => {
  it('passes the schema', async () => {
    const lockfile = await loadLockfile(REPOSITORY_LOCKFILE);
    expect(lockfile.suite).toBe('bookworm');
    expect(lockfile.inputs.map((input) => input.name).sort()).toEqual(['busybox-static', 'linux-source-6.1']);
  });

  it('pins the packages the build needs', async () => {
    const lockfile = await loadLockfile(REPOSITORY_LOCKFILE);
    const source = findLockedInput(lockfile, 'linux-source-6.1');
    const busybox = findLockedInput(lockfile, 'busybox-static');

    expect(source.package).toBe('linux-source-6.1');
    expect(source.architecture).toBe('all');
    expect(busybox.package).toBe('busybox-static');
    expect(busybox.architecture).toBe('arm64');
  });

  it('names pool files after package, version and architecture', async () => {
    const lockfile = await loadLockfile(REPOSITORY_LOCKFILE);
    for (const input of lockfile.inputs) {
      // Debian pool file names leave out the epoch.
      const versionWithoutEpoch = input.version.replace(/^\d+:/, '');
      expect(input.file).toBe(`${input.package}_${versionWithoutEpoch}_${input.architecture}.deb`);
    }
  });

  it('is in the canonical serialized form', async () => {
    const text = await readFile(REPOSITORY_LOCKFILE, 'utf8');
    expect(serializeLockfile(parseLockfile(text, REPOSITORY_LOCKFILE))).toBe(text);
  });
});

describe('lockfile schema errors', () => {
  const cases: Array<{ name: string; text: string; path: string; expected: string }> = [
    { name: 'missing sha256', text: mutated((d) => delete d.inputs[0].sha256), path: '/inputs/0/sha256', expected: 'required field is missing' },
    { name: 'short sha256', text: mutated((d) => (d.inputs[1].sha256 = 'abc123')), path: '/inputs/1/sha256', expected: 'expected a string matching ^[0-9a-f]{64}$, got "abc123"' },
    { name: 'uppercase sha256', text: mutated((d) => (d.inputs[0].sha256 = VALID.inputs[0]!.sha256.toUpperCase())), path: '/inputs/0/sha256', expected: 'expected a string matching' },
    { name: 'unknown architecture', text: mutated((d) => (d.inputs[1].architecture = 'i386')), path: '/inputs/1/architecture', expected: 'expected one of "all", "amd64", "arm64", got "i386"' },
    { name: 'wrong kind', text: mutated((d) => (d.inputs[0].kind = 'url')), path: '/inputs/0/kind', expected: 'expected "debian-package", got "url"' },
    { name: 'size as string', text: mutated((d) => (d.inputs[0].size = '12 MB')), path: '/inputs/0/size', expected: 'expected integer, got "12 MB"' },
    { name: 'zero size', text: mutated((d) => (d.inputs[0].size = 0)), path: '/inputs/0/size', expected: 'must be >= 1' },
    { name: 'unknown field', text: mutated((d) => (d.inputs[0].url = 'http://example.invalid/x.deb')), path: '/inputs/0/url', expected: 'unknown field' },
    { name: 'future format version', text: mutated((d) => (d.lockfileVersion = 2)), path: '/lockfileVersion', expected: 'expected 1, got 2' },
    { name: 'missing suite', text: mutated((d) => delete d.suite), path: '/suite', expected: 'required field is missing' },
    { name: 'empty inputs', text: mutated((d) => (d.inputs = [])), path: '/inputs', expected: 'must NOT have fewer than 1 items' },
    { name: 'version without digit', text: mutated((d) => (d.inputs[0].version = 'latest')), path: '/inputs/0/version', expected: 'got "latest"' },
    { name: 'duplicate name', text: mutated((d) => (d.inputs[1].name = 'linux-source-6.1')), path: '/inputs/1/name', expected: "duplicate input name 'linux-source-6.1'" },
    { name: 'archive of another suite', text: mutated((d) => (d.inputs[0].archive = 'trixie/main')), path: '/inputs/0/archive', expected: "expected an archive of suite bookworm" },
  ];

  for (const testCase of cases) {
    it(`rejects ${testCase.name}`, () => {
      const error = parseError(testCase.text);
      expect(error.code).toBe('INPUT_INVALID');
      expect(error.exitStatus).toBe(2);
      expect(error.message).toContain('broken.lock.yaml is not a valid lockfile');
      expect(error.message).toContain(`${testCase.path}: `);
      expect(error.message).toContain(testCase.expected);
    });
  }

  it('lists every problem in details', () => {
    const error = parseError(mutated((d) => {
      delete d.inputs[0].sha256;
      d.inputs[1].architecture = 'i386';
    }));
    expect(error.details).toHaveLength(2);
    expect(error.details.some((line) => line.startsWith('/inputs/0/sha256: '))).toBe(true);
    expect(error.details.some((line) => line.startsWith('/inputs/1/architecture: '))).toBe(true);
  });

  it('reports YAML syntax errors with line', () => {
    const error = parseError('lockfileVersion: 1\nsuite: [bookworm\ninputs: []\n');
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toMatch(/^broken\.lock\.yaml:\d+:\d+: invalid YAML: /);
  });

  it('rejects duplicate YAML keys', () => {
    const error = parseError('lockfileVersion: 1\nsuite: bookworm\nsuite: trixie\ninputs: []\n');
    expect(error.message).toContain('broken.lock.yaml:3:');
  });

  it('rejects a document that is not a mapping', () => {
    const error = parseError('- just\n- a list\n');
    expect(error.message).toContain('/: expected object');
  });
});

describe('loadLockfile', () => {
  it('names a missing file and the fix', async () => {
    const missing = path.join(temporaryDir, 'absent', LOCKFILE_NAME);
    const error = await loadLockfile(missing).catch((e: unknown) => e) as QwamosError;
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain(missing);
    expect(error.message).toContain('lock update --add');
  });

  it('names the file path in schema errors', async () => {
    const file = path.join(temporaryDir, 'bad-size.lock.yaml');
    await writeFile(file, mutated((d) => (d.inputs[0].size = -5)));
    const error = await loadLockfile(file).catch((e: unknown) => e) as QwamosError;
    expect(error.message).toContain(`${file} is not a valid lockfile: /inputs/0/size: `);
  });
});

describe('writeLockfile', () => {
  it('writes a file that loads back equal', async () => {
    const file = path.join(temporaryDir, 'round-trip.lock.yaml');
    await writeLockfile(file, VALID);
    expect(await loadLockfile(file)).toEqual(VALID);
  });

  it('keeps the epoch version a string', async () => {
    const text = serializeLockfile(VALID);
    expect(parseDocument(text).getIn(['inputs', 1, 'version'])).toBe('1:1.35.0-4+deb12u1+b1');
  });

  it('rejects an invalid lockfile and keeps the old file', async () => {
    const file = path.join(temporaryDir, 'kept.lock.yaml');
    await writeLockfile(file, VALID);
    const before = await readFile(file, 'utf8');

    const broken = structuredClone(VALID);
    broken.inputs[0]!.sha256 = 'not-a-digest';
    const error = await writeLockfile(file, broken).catch((e: unknown) => e) as QwamosError;

    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain('/inputs/0/sha256');
    expect(await readFile(file, 'utf8')).toBe(before);
  });
});

describe('findLockedInput', () => {
  it('lists the known names for an unknown one', () => {
    const error = (() => {
      try {
        findLockedInput(VALID, 'linux-source-6.12', 'repo/qwamos.lock.yaml');
      } catch (e) {
        return e as QwamosError;
      }
      throw new Error('findLockedInput accepted an unknown name');
    })();
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toBe("repo/qwamos.lock.yaml has no input named 'linux-source-6.12'; its inputs are: linux-source-6.1, busybox-static");
  });
});

describe('lock command usage', () => {
  async function runCli(argv: string[]): Promise<{ status: number; stderr: string; stdout: string }> {
    const stderr: string[] = [];
    const stdout: string[] = [];
    const errorSpy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => { stderr.push(String(chunk)); return true; });
    const outputSpy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => { stdout.push(String(chunk)); return true; });
    try {
      const status = await main(argv);
      return { status, stderr: stderr.join(''), stdout: stdout.join('') };
    } finally {
      errorSpy.mockRestore();
      outputSpy.mockRestore();
    }
  }

  it('rejects an unknown architecture in --add', async () => {
    const result = await runCli(['lock', 'update', '--add', 'hello:i386', '--lockfile', path.join(temporaryDir, 'new.lock.yaml')]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("--add 'hello:i386' is invalid; expected PACKAGE:ARCH with ARCH one of all, amd64, arm64");
  });

  it('rejects adding an input that exists', async () => {
    const result = await runCli(['lock', 'update', '--add', 'busybox-static:arm64', '--lockfile', REPOSITORY_LOCKFILE]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('input busybox-static is already in');
  });

  it('rejects an unknown option', async () => {
    const result = await runCli(['lock', 'fetch', '--ofline']);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("run 'qwamos-build lock fetch --help'");
  });

  it('prints help for both subcommands', async () => {
    const update = await runCli(['lock', 'update', '--help']);
    const fetch = await runCli(['lock', 'fetch', '--help']);
    expect(update.stdout).toContain('--add PACKAGE:ARCH');
    expect(fetch.stdout).toContain('--offline');
  });

  it('reports a missing lockfile with status 2', async () => {
    const result = await runCli(['lock', 'fetch', '--lockfile', path.join(temporaryDir, 'none.lock.yaml')]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('none.lock.yaml not found');
  });
});
