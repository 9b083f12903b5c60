import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { keysGenerateCommand, keysListCommand } from '../../cli/commands/keys.js';
import { QwamosError } from '../../core/errors.js';
import { TEST_SCRYPT_ENV } from '../../signing/keys-encrypt.js';
import { PASSPHRASE_ENV } from '../../signing/keys-passphrase.js';

let scratch: string;
beforeAll(async () => {
  process.env[TEST_SCRYPT_ENV] = '14';
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-keys-cli-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
  delete process.env[PASSPHRASE_ENV];
});

/** Runs a command and returns its exit status and standard output. */
async function run(command: typeof keysListCommand, argv: string[]): Promise<{ status: number; stdout: string }> {
  let stdout = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const status = await command.run(argv);
  vi.restoreAllMocks();
  return { status, stdout };
}

async function rejection(promise: Promise<unknown>): Promise<QwamosError> {
  const result = await promise.then(() => undefined, (error: unknown) => error);
  vi.restoreAllMocks();
  expect(result).toBeInstanceOf(QwamosError);
  return result as QwamosError;
}

describe('keys commands', () => {
  it('generate --dev --json lists four dev keys', async () => {
    const dir = path.join(scratch, 'dev');
    const { status, stdout } = await run(keysGenerateCommand, ['--dir', dir, '--dev', '--json']);
    const result = JSON.parse(stdout) as { ok: boolean; keys: { purpose: string; algorithm: string; dev: boolean; id: string }[] };

    expect(status).toBe(0);
    expect(result.ok).toBe(true);
    expect(result.keys.map((key) => [key.purpose, key.algorithm, key.dev])).toEqual([
      ['root', 'ML-DSA-87', true],
      ['system-stage', 'ML-DSA-87', true],
      ['guest-stage', 'ML-DSA-87', true],
      ['avb', 'RSA-4096', true],
    ]);

    const listed = JSON.parse((await run(keysListCommand, ['--dir', dir, '--json'])).stdout) as typeof result;
    expect(listed.keys.map((key) => key.id)).toEqual(result.keys.map((key) => key.id));
  });

  it('list prints a table', async () => {
    const dir = path.join(scratch, 'dev');
    const { stdout } = await run(keysListCommand, ['--dir', dir]);
    const lines = stdout.trimEnd().split('\n');

    expect(lines[0]).toMatch(/^ID \(SHA-256 OF PUBLIC KEY\)\s+ALGORITHM\s+PURPOSE\s+CREATED\s+TYPE\s+CERT VALID UNTIL$/);
    expect(lines).toHaveLength(5);
    expect(lines[2]).toMatch(/^[0-9a-f]{64}\s+ML-DSA-87\s+system-stage\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+dev\s+\d{4}-\d\d-\d\d$/);
    expect(lines[4]).toMatch(/^[0-9a-f]{64}\s+RSA-4096\s+avb\s+\S+\s+dev\s+-$/);
  });

  it('generate takes the release passphrase from the environment', async () => {
    process.env[PASSPHRASE_ENV] = 'twelve chars or more';
    const dir = path.join(scratch, 'release');
    const { stdout } = await run(keysGenerateCommand, ['--dir', dir, '--validity-days', '30']);

    expect(stdout).toContain(`Created release keys in ${dir}:`);
    const listed = JSON.parse((await run(keysListCommand, ['--dir', dir, '--json'])).stdout) as { keys: { dev: boolean; validUntil: string | null; created: string }[] };
    expect(listed.keys.every((key) => !key.dev)).toBe(true);
    const stage = listed.keys[1];
    expect(Date.parse(String(stage?.validUntil)) - Date.parse(String(stage?.created))).toBe(30 * 86_400_000);
  });

  it('generate without a passphrase source fails', async () => {
    const dir = path.join(scratch, 'no-passphrase');
    const error = await rejection(run(keysGenerateCommand, ['--dir', dir]));
    expect(error.code).toBe('USAGE');
    expect(error.message).toBe(`a passphrase is needed for the new release keys in ${dir}; set ${PASSPHRASE_ENV} or run on a terminal to be prompted`);
  });

  it('requires --dir', async () => {
    const error = await rejection(run(keysListCommand, []));
    expect(error.message).toBe("keys list: --dir DIR is required; run 'qwamos-build keys list --help' for the options");
  });

  it('rejects a bad --validity-days', async () => {
    const error = await rejection(run(keysGenerateCommand, ['--dir', path.join(scratch, 'x'), '--dev', '--validity-days', '1.5']));
    expect(error.message).toBe("keys generate: --validity-days '1.5' is not a whole number of days");
  });

  it('rejects an unknown option', async () => {
    const error = await rejection(run(keysListCommand, ['--dir', scratch, '--bogus']));
    expect(error.code).toBe('USAGE');
    expect(error.message).toContain("keys list: Unknown option '--bogus'");
  });

  it('help names the passphrase variable', () => {
    expect(keysGenerateCommand.help).toContain(PASSPHRASE_ENV);
    expect(keysGenerateCommand.help).toMatch(/^Usage: qwamos-build keys generate --dir DIR/);
    expect(keysListCommand.help).toMatch(/^Usage: qwamos-build keys list --dir DIR/);
  });
});
