import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../kernel/config-file.js';
import { mergeFragments } from '../../kernel/fragments.js';
import { blockingSymbols, evaluate, parseExpression } from '../../kernel/kconfig-expression.js';
import { indexKconfig } from '../../kernel/kconfig-index.js';
import { checkRequestedOptions } from '../../kernel/requested-options.js';
import { captureError, lines, temporaryFolder } from './helpers.js';
import { writeTestTree } from './kconfig-tree.js';

/** A final config as olddefconfig could leave it for the test tree. */
const FINAL = parseConfig(lines(
  'CONFIG_HAS_IOMEM=y',
  'CONFIG_MODULES=y',
  'CONFIG_BLOCK=y',
  '# CONFIG_MISC_FILESYSTEMS is not set',
  'CONFIG_TINY=y',
  'CONFIG_SLUB=y',
  '# CONFIG_SLOB is not set',
  'CONFIG_BLK_DEV_DM=m',
  'CONFIG_HIDDEN_HELPER=y',
  '# CONFIG_EXPERT is not set',
), 'final.config');

async function check(fragment: string) {
  const root = await temporaryFolder();
  await writeTestTree(root);
  const index = await indexKconfig(root, { arch: 'arm64' });
  const merged = mergeFragments({ values: new Map() }, [parseConfig(fragment, 'test.config')]);
  return checkRequestedOptions(merged.requested, FINAL, index);
}

describe('checkRequestedOptions', () => {
  it('passes options with the requested value', async () => {
    const report = await check(lines('CONFIG_BLOCK=y', 'CONFIG_BLK_DEV_DM=m', '# CONFIG_MISC_FILESYSTEMS is not set', '# CONFIG_NEVER_WRITTEN is not set'));
    expect(report.ok).toBe(true);
    expect(report.checked).toBe(4);
    expect(report.dropped).toEqual([]);
  });

  it('explains an option dropped by an enclosing if', async () => {
    const report = await check(lines('CONFIG_EROFS_FS=y'));
    const [dropped] = report.dropped;
    expect(dropped).toMatchObject({ symbol: 'EROFS_FS', requested: 'y', actual: 'n', fragment: 'test.config', fragmentLine: 1, missingSymbol: false });
    expect(dropped!.unmetConditions).toEqual([
      { kind: 'if', expression: 'MISC_FILESYSTEMS', file: 'fs/Kconfig', line: 8, blocking: [{ symbol: 'MISC_FILESYSTEMS', value: 'n' }] },
    ]);
    expect(dropped!.reason).toBe("test.config:1 requested CONFIG_EROFS_FS=y but the final config has # CONFIG_EROFS_FS is not set: 'if MISC_FILESYSTEMS' at fs/Kconfig:8 is not met (MISC_FILESYSTEMS is off)");
  });

  it('explains a depends on a symbol that is m', async () => {
    const report = await check(lines('CONFIG_DM_INIT=y'));
    const [dropped] = report.dropped;
    expect(dropped!.unmetConditions.map((condition) => condition.expression)).toEqual(['BLK_DEV_DM=y']);
    expect(dropped!.unmetConditions[0]!.blocking).toEqual([{ symbol: 'BLK_DEV_DM', value: 'm' }]);
    expect(dropped!.reason).toContain("'depends on BLK_DEV_DM=y' at drivers/Kconfig:37 is not met (BLK_DEV_DM=m)");
  });

  it('names the symbol that a negation blocks on', async () => {
    const report = await check(lines('CONFIG_NOT_IF_TINY=y'));
    expect(report.dropped[0]!.reason).toContain("'depends on !TINY' at drivers/Kconfig:41 is not met (TINY=y)");
  });

  it('explains a prompt condition', async () => {
    const report = await check(lines('CONFIG_VIRTIO_BLK=y'));
    expect(report.dropped[0]!.reason).toContain("'prompt if EXPERT' at drivers/Kconfig:2 is not met (EXPERT is off)");
  });

  it('reports a symbol missing from the kernel', async () => {
    const report = await check(lines('CONFIG_KVM_ARM_HOST=y'));
    const [dropped] = report.dropped;
    expect(dropped!.missingSymbol).toBe(true);
    expect(dropped!.reason).toMatch(/^symbol does not exist in this kernel version for arm64 \(no Kconfig file under .* defines it\)$/);
  });

  it('names the other arch that defines a symbol', async () => {
    const report = await check(lines('CONFIG_X86_ONLY=y'));
    expect(report.dropped[0]!.reason).toContain('only arch x86 defines it');
  });

  it('explains a symbol without a prompt', async () => {
    const report = await check(lines('# CONFIG_HIDDEN_HELPER is not set'));
    expect(report.dropped[0]!.reason).toContain("the symbol has no prompt (drivers/Kconfig:25), so a config file cannot set it; only 'select' from another symbol or its 'default' sets it; its defaults: y if BLOCK");
  });

  it('names the selector of a symbol requested off', async () => {
    const final = parseConfig(lines('CONFIG_BLOCK=y', 'CONFIG_MISC_FILESYSTEMS=y', 'CONFIG_EROFS_FS=y', 'CONFIG_LIBCRC=y'), 'final.config');
    const root = await temporaryFolder();
    await writeTestTree(root);
    const index = await indexKconfig(root, { arch: 'arm64' });
    const merged = mergeFragments({ values: new Map() }, [parseConfig(lines('# CONFIG_LIBCRC is not set'), 'off.config')]);
    const report = await checkRequestedOptions(merged.requested, final, index);
    expect(report.dropped[0]!.selectedBy).toEqual([{ symbol: 'EROFS_FS', file: 'fs/erofs/Kconfig', line: 4 }]);
    expect(report.dropped[0]!.reason).toContain('selected by EROFS_FS (fs/erofs/Kconfig:4), which is on');
  });

  it('explains a choice member that lost', async () => {
    const report = await check(lines('CONFIG_SLOB=y'));
    expect(report.dropped[0]!.reason).toContain('member of the choice at drivers/Kconfig:12');
  });

  it('lists every dropped option', async () => {
    const report = await check(lines('CONFIG_EROFS_FS=y', 'CONFIG_BLOCK=y', 'CONFIG_KVM_ARM_HOST=y'));
    expect(report.ok).toBe(false);
    expect(report.dropped.map((option) => option.symbol)).toEqual(['EROFS_FS', 'KVM_ARM_HOST']);
  });
});

describe('Kconfig expressions', () => {
  const config = parseConfig(lines('CONFIG_A=y', 'CONFIG_M=m', 'CONFIG_MODULES=y', 'CONFIG_NR=8', 'CONFIG_S="abc"'), 'e.config');
  const cases: [string, number][] = [
    ['A', 2],
    ['M', 1],
    ['OFF', 0],
    ['A && M', 1],
    ['A || OFF', 2],
    ['!M', 1],
    ['!(A && OFF)', 2],
    ['M=y', 0],
    ['M!=y', 2],
    ['NR >= 8', 2],
    ['NR < 4', 0],
    ['S = "abc"', 2],
    ['$(cc-option,-fstack-protector-strong) && A', 2],
  ];
  for (const [text, expected] of cases) {
    it(`evaluates ${text}`, () => {
      expect(evaluate(parseExpression(text), config)).toBe(expected);
    });
  }

  it('counts m as n without MODULES', () => {
    const noModules = parseConfig(lines('CONFIG_M=m'), 'n.config');
    expect(evaluate(parseExpression('M'), noModules)).toBe(0);
  });

  it('lists only the failing operands of &&', () => {
    expect(blockingSymbols(parseExpression('A && OFF && !M'), config, 2)).toEqual(['OFF', 'M']);
  });

  it('rejects a broken expression', async () => {
    const error = await captureError(() => parseExpression('A && (B'));
    expect(error.message).toBe("invalid Kconfig expression 'A && (B': missing )");
  });
});
