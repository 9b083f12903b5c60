import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../kernel/config-file.js';
import { fragmentLabel, mergeFragments, readFragments } from '../../kernel/fragments.js';
import { DEFAULT_FRAGMENT_NAMES, defaultFragmentPaths } from '../../kernel/paths.js';
import { lines, temporaryFolder, writeTree } from './helpers.js';

const BASE = parseConfig(lines('# Linux/arm64 6.1.192 Kernel Configuration', 'CONFIG_A=y', '# CONFIG_B is not set', 'CONFIG_C=m'), 'base.config');

describe('mergeFragments', () => {
  it('applies fragments over the base', () => {
    const one = parseConfig(lines('CONFIG_B=y', 'CONFIG_D="x"'), 'one.config');
    const merged = mergeFragments(BASE, [one]);
    expect(merged.config.values.get('A')).toBe('y');
    expect(merged.config.values.get('B')).toBe('y');
    expect(merged.config.values.get('C')).toBe('m');
    expect(merged.config.values.get('D')).toBe('"x"');
    expect(merged.config.headerVersion).toBe('6.1.192');
  });

  it('lets the later fragment win', () => {
    const one = parseConfig(lines('CONFIG_B=y'), 'one.config');
    const two = parseConfig(lines('', '# CONFIG_B is not set'), 'two.config');
    const merged = mergeFragments(BASE, [one, two]);
    expect(merged.config.values.get('B')).toBe('n');
    expect(merged.requested.get('B')).toEqual({ symbol: 'B', value: 'n', fragment: 'two.config', line: 2 });
  });

  it('records overrides between fragments', () => {
    const one = parseConfig(lines('CONFIG_B=y', 'CONFIG_E=y'), 'one.config');
    const two = parseConfig(lines('CONFIG_B=m', 'CONFIG_E=y'), 'two.config');
    const merged = mergeFragments(BASE, [one, two]);
    expect(merged.overrides).toHaveLength(1);
    expect(merged.overrides[0]!.symbol).toBe('B');
    expect(merged.overrides[0]!.earlier.fragment).toBe('one.config');
    expect(merged.overrides[0]!.later.value).toBe('m');
  });

  it('requests only fragment options', () => {
    const merged = mergeFragments(BASE, [parseConfig(lines('CONFIG_B=y'), 'one.config')]);
    expect([...merged.requested.keys()]).toEqual(['B']);
  });

  it('leaves the base unchanged', () => {
    mergeFragments(BASE, [parseConfig(lines('CONFIG_A=n'), 'one.config')]);
    expect(BASE.values.get('A')).toBe('y');
  });
});

describe('readFragments', () => {
  it('reads files in order with labels', async () => {
    const folder = await temporaryFolder();
    await writeTree(folder, { 'a.config': lines('# comment', 'CONFIG_X=y'), 'b.config': lines('CONFIG_X=m') });
    const fragments = await readFragments([path.join(folder, 'a.config'), path.join(folder, 'b.config')]);
    const merged = mergeFragments({ values: new Map() }, fragments);
    expect(merged.config.values.get('X')).toBe('m');
    expect(fragmentLabel(merged.overrides[0]!.earlier)).toBe('a.config:2');
  });

  it('reports the fragment and line of a bad line', async () => {
    const folder = await temporaryFolder();
    await writeTree(folder, { 'bad.config': lines('CONFIG_X=y', 'CONFIG_Y = y') });
    await expect(readFragments([path.join(folder, 'bad.config')])).rejects.toThrow(`${path.join(folder, 'bad.config')}:2:`);
  });

  it('reads every shipped fragment', async () => {
    const fragments = await readFragments(defaultFragmentPaths());
    expect(fragments).toHaveLength(DEFAULT_FRAGMENT_NAMES.length);
    const merged = mergeFragments({ values: new Map() }, fragments);
    expect(merged.overrides).toEqual([]);
    for (const symbol of ['VIRTUALIZATION', 'KVM', 'VIRTIO_MMIO', 'VIRTIO_BLK', 'DM_INIT', 'DM_VERITY', 'MISC_FILESYSTEMS', 'EROFS_FS', 'SERIAL_AMBA_PL011_CONSOLE', 'BLK_DEV_INITRD', 'IKCONFIG_PROC']) {
      expect(merged.requested.get(symbol)?.value, symbol).toBe('y');
    }
    expect(merged.requested.has('KVM_ARM_HOST')).toBe(false);
  });
});
