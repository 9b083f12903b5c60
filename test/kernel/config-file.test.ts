import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { configValue, configValuesEqual, formatConfig, parseConfig, readConfigFile } from '../../kernel/config-file.js';
import { captureError, lines, temporaryFolder } from './helpers.js';

const SAMPLE = lines(
  '#',
  '# Automatically generated file; DO NOT EDIT.',
  '# Linux/arm64 6.1.192 Kernel Configuration',
  '#',
  'CONFIG_KVM=y',
  'CONFIG_EROFS_FS=m',
  'CONFIG_CMDLINE="console=ttyAMA0 quote=\\"x\\""',
  'CONFIG_NR_CPUS=4',
  'CONFIG_PHYSICAL_START=0x1000000',
  '# CONFIG_MODULES is not set',
  '',
  '#',
  '# General setup',
  '#',
);

/** Debian's own kernel config: /boot/config-* or the linux-config-6.1 package. */
function debianConfigPath(): string | undefined {
  const boot = existsSync('/boot') ? readdirSync('/boot').find((name) => name.startsWith('config-')) : undefined;
  if (boot) return path.join('/boot', boot);
  const packaged = '/usr/src/linux-config-6.1/config.amd64_none_amd64.xz';
  return existsSync(packaged) ? packaged : undefined;
}

describe('parseConfig', () => {
  it('reads every value form', () => {
    const config = parseConfig(SAMPLE, 'sample.config');
    expect(config.values.get('KVM')).toBe('y');
    expect(config.values.get('EROFS_FS')).toBe('m');
    expect(config.values.get('CMDLINE')).toBe('"console=ttyAMA0 quote=\\"x\\""');
    expect(config.values.get('NR_CPUS')).toBe('4');
    expect(config.values.get('PHYSICAL_START')).toBe('0x1000000');
    expect(config.values.get('MODULES')).toBe('n');
  });

  it('reads arch and version from the header', () => {
    const config = parseConfig(SAMPLE, 'sample.config');
    expect(config.headerArch).toBe('arm64');
    expect(config.headerVersion).toBe('6.1.192');
  });

  it('treats a missing symbol as not set', () => {
    const config = parseConfig(SAMPLE, 'sample.config');
    expect(configValue(config, 'DOES_NOT_APPEAR')).toBe('n');
  });

  it('keeps the last of repeated assignments', () => {
    const config = parseConfig(lines('CONFIG_A=y', 'CONFIG_B=y', '# CONFIG_A is not set'), 'repeat.config');
    expect(config.values.get('A')).toBe('n');
    expect([...config.values.keys()]).toEqual(['A', 'B']);
    expect(config.lines.get('A')).toBe(1);
  });

  it('rejects a line that is not an assignment', () => {
    expect(() => parseConfig(lines('CONFIG_A=y', 'KVM=y'), 'bad.config')).toThrow("bad.config:2: 'KVM=y' is not a kernel config line");
  });

  it('rejects an invalid value', async () => {
    const error = await captureError(() => parseConfig(lines('CONFIG_A=yes'), 'bad-value.config'));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain("bad-value.config:1: invalid value 'yes' for CONFIG_A");
  });

  it('rejects an unterminated string', () => {
    expect(() => parseConfig(lines('CONFIG_S="abc'), 's.config')).toThrow('s.config:1: invalid value');
  });
});

describe('formatConfig', () => {
  it('writes a config that parses back equal', () => {
    const config = parseConfig(SAMPLE, 'sample.config');
    const again = parseConfig(formatConfig(config), 'again.config');
    expect([...again.values]).toEqual([...config.values]);
    expect(again.headerVersion).toBe('6.1.192');
    expect(again.headerArch).toBe('arm64');
  });

  it('writes n as is not set', () => {
    const text = formatConfig({ values: new Map([['A', 'n'], ['B', 'y']]) });
    expect(text).toBe(lines('# CONFIG_A is not set', 'CONFIG_B=y'));
  });
});

describe('configValuesEqual', () => {
  it('compares hex numbers by value', () => {
    expect(configValuesEqual('0x10', '0x0010')).toBe(true);
    expect(configValuesEqual('0x10', '0x11')).toBe(false);
    expect(configValuesEqual('y', 'm')).toBe(false);
  });
});

describe('readConfigFile', () => {
  it('reads a gzip-compressed config', async () => {
    const folder = await temporaryFolder();
    const file = path.join(folder, 'config.gz');
    await writeFile(file, gzipSync(SAMPLE));
    const config = await readConfigFile(file);
    expect(config.values.get('KVM')).toBe('y');
  });

  it('reports a missing file', async () => {
    await expect(readConfigFile('/nonexistent/qwamos.config')).rejects.toThrow('kernel config file /nonexistent/qwamos.config does not exist');
  });

  const debianConfig = debianConfigPath();
  it.skipIf(debianConfig === undefined)('reads Debian\'s config like grep counts it', async () => {
    // The reference counts come from grep over the decompressed text.
    const text = debianConfig!.endsWith('.xz') ? execFileSync('xz', ['-dc', debianConfig!], { encoding: 'utf8' }) : readFileSync(debianConfig!, 'utf8');
    const set = text.split('\n').filter((line) => /^CONFIG_[A-Za-z0-9_]+=/.test(line)).length;
    const notSet = text.split('\n').filter((line) => /^# CONFIG_[A-Za-z0-9_]+ is not set$/.test(line)).length;

    const config = await readConfigFile(debianConfig!);
    expect([...config.values.values()].filter((value) => value !== 'n').length).toBe(set);
    expect([...config.values.values()].filter((value) => value === 'n').length).toBe(notSet);
    expect(config.headerArch).toBe('x86');
    expect(config.headerVersion).toMatch(/^6\.1\./);
  });
});
