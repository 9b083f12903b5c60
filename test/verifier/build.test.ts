/**
 * The qwamos-verify build: static, stripped, without a build id or source
 * paths, identical across output folders, and an arm64 binary from the
 * Debian cross compiler. readelf is the reference reader of the ELF files.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { buildVerifier } from '../../signing/verifier-build.js';

let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-verifier-build-'));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function sha256Of(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/** Checks the ELF properties both targets share and returns readelf's file header text. */
async function checkStaticElf(program: string): Promise<string> {
  const { stdout: header } = await runTool('readelf', ['-hW', program]);
  const { stdout: segments } = await runTool('readelf', ['-lW', program]);
  const { stdout: notes } = await runTool('readelf', ['-nW', program]);
  const { stdout: symbols } = await runTool('readelf', ['-sW', program]);
  const bytes = await readFile(program);

  expect(header).toMatch(/Type:\s+EXEC/);
  expect(segments).not.toContain('INTERP');
  expect(segments).not.toContain('DYNAMIC');
  expect(notes).not.toContain('NT_GNU_BUILD_ID');
  expect(symbols).not.toContain('main');
  expect(bytes.includes(Buffer.from(process.cwd()))).toBe(false);
  expect(bytes.includes(Buffer.from(scratch))).toBe(false);
  expect(bytes.includes(Buffer.from('node_modules'))).toBe(false);
  return header;
}

describe('buildVerifier', () => {
  it('builds a static host program that is identical in two folders', async () => {
    const first = await buildVerifier({ target: 'host', outDir: path.join(scratch, 'host-a') });
    const second = await buildVerifier({ target: 'host', outDir: path.join(scratch, 'host-b') });

    expect(path.basename(first)).toBe('qwamos-verify');
    expect(await sha256Of(second)).toBe(await sha256Of(first));
    const header = await checkStaticElf(first);
    expect(header).toMatch(/Machine:\s+Advanced Micro Devices X86-64/);
  }, 120_000);

  it('builds a static arm64 program with the cross compiler', async () => {
    const program = await buildVerifier({ target: 'aarch64', outDir: path.join(scratch, 'arm64') });

    const header = await checkStaticElf(program);
    expect(header).toMatch(/Machine:\s+AArch64/);
  }, 120_000);

  it('rejects a sanitizer build for arm64', async () => {
    await expect(buildVerifier({ target: 'aarch64', outDir: path.join(scratch, 'bad'), sanitize: true }))
      .rejects.toThrow(expect.objectContaining({ code: 'USAGE', message: expect.stringContaining('sanitize builds are host only') }));
  });
});
