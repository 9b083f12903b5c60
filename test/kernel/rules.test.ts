import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../kernel/config-file.js';
import { defaultRulesPath } from '../../kernel/paths.js';
import { RULE_CATEGORIES, checkConfigAgainstRules, compareVersions, describeFailedRule, loadRules, parseRules } from '../../kernel/rules.js';
import { captureError, lines, temporaryFolder, writeTree } from './helpers.js';

const RULES = lines(
  'schemaVersion: 1',
  'rules:',
  '  kvm:',
  '    - id: kvm-built-in',
  '      options: { CONFIG_KVM: y }',
  '      reason: guests need /dev/kvm',
  '      architectures: [arm64]',
  '    - id: kvm-arm-host',
  '      options: { CONFIG_KVM_ARM_HOST: y }',
  '      reason: the host code before 5.8',
  '      architectures: [arm64]',
  '      beforeVersion: "5.8"',
  '  erofs:',
  '    - id: erofs',
  '      options: { CONFIG_EROFS_FS: [y, m], CONFIG_MISC_FILESYSTEMS: y }',
  '      reason: system image',
  '      minVersion: "5.4"',
  '  hardening:',
  '    - id: nr-cpus',
  '      options: { CONFIG_NR_CPUS: 8, CONFIG_BASE: "0x10" }',
  '      reason: numbers',
);

const ARM64_CONFIG = parseConfig(lines('CONFIG_KVM=y', 'CONFIG_EROFS_FS=m', 'CONFIG_MISC_FILESYSTEMS=y', 'CONFIG_NR_CPUS=8', 'CONFIG_BASE=0x0010'), 'arm64.config');

async function schemaError(yamlText: string) {
  return captureError(() => parseRules(yamlText, 'bad-rules.yaml'));
}

describe('checkConfigAgainstRules', () => {
  it('passes a config that meets the rules', async () => {
    const { rules } = await parseRules(RULES, 'rules.yaml');
    const report = checkConfigAgainstRules(ARM64_CONFIG, rules, { arch: 'arm64', version: '6.1.192' });
    expect(report.ok).toBe(true);
    expect(report.results.map((result) => [result.id, result.status])).toEqual([
      ['kvm-built-in', 'pass'],
      ['kvm-arm-host', 'skip'],
      ['erofs', 'pass'],
      ['nr-cpus', 'pass'],
    ]);
    expect(report.results[1]!.skipReason).toBe('applies before Linux 5.8, the kernel is 6.1.192');
  });

  it('applies a version range to older kernels', async () => {
    const { rules } = await parseRules(RULES, 'rules.yaml');
    const report = checkConfigAgainstRules(ARM64_CONFIG, rules, { arch: 'arm64', version: '5.4.0' });
    expect(report.results.find((result) => result.id === 'kvm-arm-host')!.status).toBe('fail');
    expect(report.results.find((result) => result.id === 'erofs')!.status).toBe('pass');
    expect(report.failed).toBe(1);
  });

  it('skips rules below minVersion', async () => {
    const { rules } = await parseRules(RULES, 'rules.yaml');
    const report = checkConfigAgainstRules(ARM64_CONFIG, rules, { arch: 'arm64', version: '4.19' });
    const erofs = report.results.find((result) => result.id === 'erofs')!;
    expect(erofs.status).toBe('skip');
    expect(erofs.skipReason).toBe('applies from Linux 5.4, the kernel is 4.19');
  });

  it('skips rules for other architectures', async () => {
    const { rules } = await parseRules(RULES, 'rules.yaml');
    const report = checkConfigAgainstRules(parseConfig('', 'empty.config'), rules, { arch: 'x86', version: '6.1' });
    expect(report.results[0]!.skipReason).toBe('applies to arm64, not x86');
    expect(report.results.map((result) => result.status)).toEqual(['skip', 'skip', 'fail', 'fail']);
  });

  it('describes a failed rule on one line', async () => {
    const { rules } = await parseRules(RULES, 'rules.yaml');
    const config = parseConfig(lines('CONFIG_KVM=m'), 'm.config');
    const report = checkConfigAgainstRules(config, rules, { arch: 'arm64', version: '6.1' });
    expect(describeFailedRule(report.results[0]!)).toBe('[kvm] kvm-built-in: CONFIG_KVM is m, expected y (guests need /dev/kvm)');
    expect(describeFailedRule(report.results[2]!)).toBe('[erofs] erofs: CONFIG_EROFS_FS is not set, expected y or m; CONFIG_MISC_FILESYSTEMS is not set, expected y (system image)');
  });

  it('requires a version for version-bound rules', async () => {
    const { rules } = await parseRules(RULES, 'rules.yaml');
    const error = await captureError(() => checkConfigAgainstRules(ARM64_CONFIG, rules, { arch: 'arm64' }));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain("rule 'kvm-arm-host' depends on the kernel version, which is unknown");
    expect(error.message).toContain('--kernel-version');
  });
});

describe('compareVersions', () => {
  it('orders versions by number', () => {
    expect(compareVersions('5.10', '5.8')).toBeGreaterThan(0);
    expect(compareVersions('6.1.0-57-amd64', '6.1')).toBe(0);
    expect(compareVersions('5.7.19', '5.8')).toBeLessThan(0);
  });
});

describe('loadRules', () => {
  it('loads the shipped rule file', async () => {
    const { rules } = await loadRules(defaultRulesPath());
    expect(new Set(rules.map((rule) => rule.category))).toEqual(new Set(RULE_CATEGORIES));
    const kvmArmHost = rules.find((rule) => rule.options.some((option) => option.symbol === 'KVM_ARM_HOST'));
    expect(kvmArmHost?.beforeVersion).toBe('5.8');
    expect(kvmArmHost?.architectures).toEqual(['arm64']);
  });

  it('reports a missing file', async () => {
    const error = await captureError(() => loadRules('/nonexistent/rules.yaml'));
    expect(error.code).toBe('INPUT_NOT_FOUND');
  });

  it('names the file of an invalid rule set', async () => {
    const folder = await temporaryFolder();
    await writeTree(folder, { 'rules.yaml': lines('schemaVersion: 2', 'rules: {}') });
    const error = await captureError(() => loadRules(path.join(folder, 'rules.yaml')));
    expect(error.message).toContain(`${path.join(folder, 'rules.yaml')} does not match the kernel rule schema`);
    expect(error.details).toContain(`${path.join(folder, 'rules.yaml')}: /schemaVersion: must be equal to constant (1)`);
  });
});

describe('rule schema errors', () => {
  it('rejects an unknown category', async () => {
    const error = await schemaError(lines('schemaVersion: 1', 'rules:', '  kvmm: []'));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.details).toContain("bad-rules.yaml: /rules: must NOT have additional properties ('kvmm')");
  });

  it('rejects an invalid option value', async () => {
    const error = await schemaError(RULES.replace('CONFIG_KVM: y', 'CONFIG_KVM: yes'));
    expect(error.details).toContain('bad-rules.yaml: /rules/kvm/0/options/CONFIG_KVM: must be y, m, n, a "quoted string", a decimal or a 0x hex number');
  });

  it('rejects a rule without a reason', async () => {
    const error = await schemaError(RULES.replace('      reason: system image\n', ''));
    expect(error.details).toContain("bad-rules.yaml: /rules/erofs/0: must have required property 'reason'");
  });

  it('rejects an option name without CONFIG_', async () => {
    const error = await schemaError(RULES.replace('CONFIG_KVM: y', 'KVM: y'));
    expect(error.details).toContain("bad-rules.yaml: /rules/kvm/0/options: property name 'KVM' is invalid: option names are CONFIG_ followed by letters, digits and _");
  });

  it('rejects an invalid version', async () => {
    const error = await schemaError(RULES.replace('beforeVersion: "5.8"', 'beforeVersion: "5.x"'));
    expect(error.details).toContain('bad-rules.yaml: /rules/kvm/1/beforeVersion: must match pattern "^[0-9]+(\\.[0-9]+){0,2}$"');
  });

  it('rejects an unknown rule field', async () => {
    const error = await schemaError(RULES.replace('      minVersion: "5.4"', '      minVersion: "5.4"\n      severity: high'));
    expect(error.details).toContain("bad-rules.yaml: /rules/erofs/0: must NOT have additional properties ('severity')");
  });

  it('rejects YAML syntax errors', async () => {
    const error = await schemaError('rules: [unclosed');
    expect(error.message).toMatch(/^bad-rules.yaml: invalid YAML: /);
  });

  it('rejects duplicate rule ids', async () => {
    const error = await schemaError(RULES.replace('id: erofs', 'id: kvm-built-in'));
    expect(error.message).toBe("bad-rules.yaml: rule id 'kvm-built-in' is used twice (/rules/erofs); give each rule a unique id");
  });

  it('rejects an empty version range', async () => {
    const error = await schemaError(RULES.replace('      minVersion: "5.4"', '      minVersion: "5.4"\n      beforeVersion: "5.4"'));
    expect(error.message).toBe("bad-rules.yaml: rule 'erofs' (/rules/erofs) has minVersion 5.4 not below beforeVersion 5.4, so it never applies");
  });
});
