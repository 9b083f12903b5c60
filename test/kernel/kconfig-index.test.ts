import { describe, expect, it } from 'vitest';
import { findDefinitions, indexKconfig } from '../../kernel/kconfig-index.js';
import { captureError, lines, temporaryFolder } from './helpers.js';
import { writeTestTree } from './kconfig-tree.js';

async function indexTestTree(overrides: Record<string, string> = {}) {
  const root = await temporaryFolder();
  await writeTestTree(root, overrides);
  return indexKconfig(root, { arch: 'arm64' });
}

describe('indexKconfig', () => {
  it('follows every kind of source line', async () => {
    const index = await indexTestTree();
    expect(index.files).toEqual([
      'Kconfig',
      'arch/arm64/Kconfig',
      'arch/arm64/Kconfig.extra',
      'fs/Kconfig',
      'fs/erofs/Kconfig',
      'drivers/Kconfig',
      'crypto/sha/Kconfig',
    ]);
  });

  it('reads only the selected architecture', async () => {
    const index = await indexTestTree();
    expect(findDefinitions(index, 'ARM64_EXTRA')).toHaveLength(1);
    expect(findDefinitions(index, 'X86_ONLY')).toEqual([]);
  });

  it('records depends on and the enclosing if', async () => {
    const index = await indexTestTree();
    const [erofs] = findDefinitions(index, 'EROFS_FS');
    expect(erofs).toMatchObject({ file: 'fs/erofs/Kconfig', line: 1, type: 'tristate', prompt: 'EROFS filesystem support' });
    expect(erofs!.ownConditions).toEqual([{ kind: 'depends on', expression: 'BLOCK', file: 'fs/erofs/Kconfig', line: 3 }]);
    expect(erofs!.enclosingConditions).toEqual([{ kind: 'if', expression: 'MISC_FILESYSTEMS', file: 'fs/Kconfig', line: 8 }]);
  });

  it('skips keywords inside help text', async () => {
    const index = await indexTestTree();
    expect(findDefinitions(index, 'NOT_A_SYMBOL')).toEqual([]);
    expect(findDefinitions(index, 'LIBCRC')[0]!.ownConditions).toEqual([]);
  });

  it('joins continuation lines and reads prompt conditions', async () => {
    const index = await indexTestTree();
    const [virtio] = findDefinitions(index, 'VIRTIO_BLK');
    expect(virtio!.ownConditions.map((condition) => `${condition.kind} ${condition.expression}`)).toEqual(['prompt if EXPERT', 'depends on HAS_IOMEM && BLOCK']);
    expect(virtio!.enclosingConditions).toEqual([{ kind: 'menu depends on', expression: 'HAS_IOMEM', file: 'Kconfig', line: 6 }]);
  });

  it('marks choice members with the choice dependencies', async () => {
    const index = await indexTestTree();
    const [slob] = findDefinitions(index, 'SLOB');
    expect(slob!.choice).toEqual({ file: 'drivers/Kconfig', line: 12 });
    expect(slob!.enclosingConditions[0]).toEqual({ kind: 'choice depends on', expression: '!TINY || BLOCK', file: 'drivers/Kconfig', line: 14 });
    expect(findDefinitions(index, 'HIDDEN_HELPER')[0]!.choice).toBeUndefined();
  });

  it('keeps a comment dependency off the previous entry', async () => {
    const index = await indexTestTree();
    const [helper] = findDefinitions(index, 'HIDDEN_HELPER');
    expect(helper!.ownConditions).toEqual([]);
    expect(helper!.prompt).toBeUndefined();
    expect(helper!.defaults).toEqual(['y if BLOCK']);
  });

  it('records select lines by target', async () => {
    const index = await indexTestTree();
    expect(index.reverseDependencies.get('LIBCRC')).toEqual([{ kind: 'select', selector: 'EROFS_FS', target: 'LIBCRC', file: 'fs/erofs/Kconfig', line: 4 }]);
  });

  it('reports a missing sourced file', async () => {
    const error = await captureError(() => indexTestTree({ 'fs/Kconfig': lines('source "fs/nothing/Kconfig"') }));
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain('fs/Kconfig:1: sourced Kconfig file fs/nothing/Kconfig does not exist');
  });

  it('reports an endif that closes a menu', async () => {
    const error = await captureError(() => indexTestTree({ 'drivers/Kconfig': lines('config A', '\tbool "a"', 'endif') }));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain("drivers/Kconfig:3: 'endif' does not match: the open block is 'menu' from Kconfig:5");
  });

  it('reports an endmenu without a menu', async () => {
    const error = await captureError(() => indexTestTree({ 'crypto/sha/Kconfig': lines('endmenu') }));
    expect(error.message).toContain("crypto/sha/Kconfig:1: 'endmenu' does not match: no block is open");
  });

  it('reports a block that is never closed', async () => {
    const error = await captureError(() => indexTestTree({ 'crypto/sha/Kconfig': lines('if BLOCK', 'config A', '\tbool "a"') }));
    expect(error.message).toContain("crypto/sha/Kconfig:1: 'if' block is never closed");
  });

  it('reports an unknown source variable', async () => {
    const error = await captureError(() => indexTestTree({ 'crypto/sha/Kconfig': lines('source "$(NOPE)/Kconfig"') }));
    expect(error.message).toContain("crypto/sha/Kconfig:1: unknown variable 'NOPE'");
  });
});
