import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { loadAllProfiles, loadProfile } from '../../pipeline/profiles.js';
import { loadRecipe, sourceDateEpoch } from '../../pipeline/recipes.js';

async function scratchDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'qwamos-profiles-'));
}

async function failure(promise: Promise<unknown>): Promise<QwamosError> {
  const error = await promise.then(() => undefined, (caught: unknown) => caught);
  expect(error).toBeInstanceOf(QwamosError);
  return error as QwamosError;
}

const VALID_PROFILE = `id: test-board
name: Test board
arch: arm64
kvm: { available: true, reason: test }
flash: { method: qemu }
kernel:
  source: { input: linux-source-6.1 }
  version: "6.1"
  baseConfig: tinyconfig
  fragments: [kvm]
  crossCompile: aarch64-linux-gnu-
  imageTarget: Image
`;

describe('device profiles', () => {
  it('loads every profile in the repository', async () => {
    const profiles = await loadAllProfiles();
    expect(profiles.map((profile) => profile.id)).toEqual(
      expect.arrayContaining(['qemu-virt-arm64', 'pixel-8', 'pixel-8-pro', 'oneplus-12', 'galaxy-s24-exynos', 'galaxy-s24-snapdragon']),
    );
  });

  it('marks every unconfirmed JSON pointer with an existing field', async () => {
    for (const profile of await loadAllProfiles()) {
      for (const pointer of profile.unconfirmed ?? []) {
        const value = pointer.split('/').slice(1).reduce<unknown>((node, part) => (node as Record<string, unknown> | undefined)?.[part], profile);
        expect(value, `${profile.id}: ${pointer}`).toBeDefined();
      }
    }
  });

  it('names the known devices for an unknown one', async () => {
    const error = await failure(loadProfile('pixel-99'));
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain("unknown device 'pixel-99'");
    expect(error.message).toContain('qemu-virt-arm64');
  });

  it('rejects a wrong type with the file and JSON path', async () => {
    const dir = await scratchDir();
    await writeFile(path.join(dir, 'test-board.yaml'), VALID_PROFILE.replace('memoryMiB', 'x').replace('fragments: [kvm]', 'fragments: kvm'));
    const error = await failure(loadProfile('test-board', dir));

    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toBe(`${path.join(dir, 'test-board.yaml')} is invalid: at /kernel/fragments: must be array`);
  });

  it('rejects an unknown property and a missing one', async () => {
    const dir = await scratchDir();
    await writeFile(path.join(dir, 'test-board.yaml'), VALID_PROFILE.replace('arch: arm64\n', 'arhc: arm64\n'));
    const error = await failure(loadProfile('test-board', dir));

    expect(error.message).toContain("at /: missing required property 'arch'");
    expect(error.details.join('\n') + error.message).toContain("unknown property 'arhc'");
  });

  it('rejects an id that differs from the file name', async () => {
    const dir = await scratchDir();
    await writeFile(path.join(dir, 'test-board.yaml'), VALID_PROFILE.replace('id: test-board', 'id: other-board'));
    const error = await failure(loadProfile('test-board', dir));

    expect(error.message).toContain("at /id: must equal the file name 'test-board', found 'other-board'");
  });

  it('reports YAML syntax errors with the line', async () => {
    const dir = await scratchDir();
    await writeFile(path.join(dir, 'test-board.yaml'), `${VALID_PROFILE}kvm: [unclosed\n`);
    const error = await failure(loadProfile('test-board', dir));

    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toMatch(/test-board\.yaml:\d+ is not valid YAML/);
  });
});

describe('recipes', () => {
  it('resolves paths against the recipe folder', async () => {
    const recipe = await loadRecipe('recipes/host.yaml');
    expect(recipe.initPath).toBe(path.resolve('recipes/host/init'));
    expect(recipe.overlayPaths).toEqual([path.resolve('recipes/sample-runtime')]);
  });

  it('rejects a verity block size other than 4096', async () => {
    const dir = await scratchDir();
    await mkdir(path.join(dir, 'r'));
    const file = path.join(dir, 'r', 'bad.yaml');
    await writeFile(file, 'name: bad\ninitramfs: { init: init, busyboxInput: busybox-static }\nsystem:\n  overlays: [x]\n  verity: { hashAlgorithm: sha256, dataBlockSize: 1024, hashBlockSize: 4096 }\n');
    const error = await failure(loadRecipe(file));

    expect(error.message).toBe(`${file} is invalid: at /system/verity/dataBlockSize: must be equal to constant`);
  });

  it('names a missing recipe file', async () => {
    const error = await failure(loadRecipe('/nonexistent/recipe.yaml'));
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toBe('/nonexistent/recipe.yaml not found');
  });

  it('takes SOURCE_DATE_EPOCH over the recipe value', async () => {
    const recipe = await loadRecipe('recipes/host.yaml');
    expect(sourceDateEpoch(recipe, { SOURCE_DATE_EPOCH: '1234' })).toBe(1234);
    expect(sourceDateEpoch(recipe, {})).toBe(recipe.sourceDateEpoch);
    expect(() => sourceDateEpoch(recipe, { SOURCE_DATE_EPOCH: 'yesterday' })).toThrow("SOURCE_DATE_EPOCH 'yesterday' is not a whole number of seconds");
  });
});
