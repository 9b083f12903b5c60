import { existsSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { kconfigCheckCommand } from '../../cli/commands/kconfig-check.js';
import { formatConfig } from '../../kernel/config-file.js';
import { mergeFragments, readFragments } from '../../kernel/fragments.js';
import { defaultFragmentPaths } from '../../kernel/paths.js';
import { captureError, lines, temporaryFolder } from './helpers.js';

const DEVICE = 'qemu-virt-arm64';

/** Runs the command and returns its exit status and standard output. */
async function runCheck(...argv: string[]): Promise<{ status: number; output: string }> {
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  });
  try {
    const status = await kconfigCheckCommand.run(argv);
    return { status, output: chunks.join('') };
  } finally {
    spy.mockRestore();
  }
}

afterEach(() => {
  vi.restoreAllMocks();
});

/** Returns a config with every shipped fragment applied, as a QWAMOS arm64 build ends. */
async function qwamosConfigText(): Promise<string> {
  const merged = mergeFragments({ values: new Map(), headerArch: 'arm64', headerVersion: '6.1.192' }, await readFragments(defaultFragmentPaths()));
  return formatConfig(merged.config);
}

function debianConfigPath(): string | undefined {
  const boot = existsSync('/boot') ? readdirSync('/boot').find((name) => name.startsWith('config-')) : undefined;
  if (boot) return path.join('/boot', boot);
  const packaged = '/usr/src/linux-config-6.1/config.amd64_none_amd64.xz';
  return existsSync(packaged) ? packaged : undefined;
}

describe('kconfig check', () => {
  it('passes a config built from the shipped fragments', async () => {
    const folder = await temporaryFolder();
    const file = path.join(folder, '.config');
    await writeFile(file, await qwamosConfigText());

    const { status, output } = await runCheck('--device', DEVICE, '--config', file);
    expect(status).toBe(0);
    expect(output).not.toContain('FAIL');
    expect(output).toMatch(/^0 failed, \d+ passed, 1 skipped$/m);
    expect(output.split('\n')[0]).toBe(`kconfig check: ${file} (Linux/arm64 6.1.192) for ${DEVICE} (arm64), kernel version 6.1.192`);
  });

  it('prints one line per failed rule', async () => {
    const folder = await temporaryFolder();
    const file = path.join(folder, '.config');
    await writeFile(file, (await qwamosConfigText()).replace('CONFIG_KVM=y', '# CONFIG_KVM is not set').replace('CONFIG_DM_INIT=y', ''));

    const { status, output } = await runCheck('--device', DEVICE, '--config', file);
    expect(status).toBe(1);
    const failures = output.split('\n').filter((line) => line.startsWith('FAIL'));
    expect(failures).toEqual([
      'FAIL [kvm] kvm-built-in: CONFIG_KVM is not set, expected y (QWAMOS runs its guests under KVM (/dev/kvm). On arm64 KVM is a bool and cannot be a module.)',
      expect.stringMatching(/^FAIL \[verity\] dm-init: CONFIG_DM_INIT is not set, expected y \(/),
    ]);
    expect(output).toMatch(/^2 failed, /m);
  });

  const debianConfig = debianConfigPath();
  it.skipIf(debianConfig === undefined)('checks Debian\'s amd64 config for an arm64 device', async () => {
    const { status, output } = await runCheck('--device', DEVICE, '--config', debianConfig!);
    expect(status).toBe(1);
    expect(output).toContain(`warning: ${debianConfig} is a Linux/x86 config, but device ${DEVICE} is arm64; rules were checked for arm64`);
    // Debian builds KVM, dm-verity and EROFS as modules and has no PL011.
    expect(output).toContain('FAIL [kvm] kvm-built-in: CONFIG_KVM is m, expected y');
    expect(output).toContain('FAIL [verity] dm-verity: CONFIG_DM_VERITY is m, expected y');
    expect(output).toContain('FAIL [erofs] erofs: CONFIG_EROFS_FS is m, expected y');
    expect(output).toContain('FAIL [console] pl011-console: CONFIG_SERIAL_AMBA_PL011 is not set, expected y; CONFIG_SERIAL_AMBA_PL011_CONSOLE is not set, expected y');
    expect(output).toContain('FAIL [hardening] embedded-config: CONFIG_IKCONFIG is not set, expected y');
    expect(output).not.toContain('[hardening] kaslr');
    expect(output).not.toContain('[kvm] virtualization-menu');

    const json = JSON.parse((await runCheck('--device', DEVICE, '--config', debianConfig!, '--json')).output) as Record<string, unknown>;
    expect(json.ok).toBe(false);
    expect(json.configArch).toBe('x86');
    expect(json.arch).toBe('arm64');
    const results = json.results as { id: string; status: string }[];
    expect(results.find((result) => result.id === 'kvm-arm-host')?.status).toBe('skip');
    expect(results.find((result) => result.id === 'kaslr')?.status).toBe('pass');
  });

  it('checks the config embedded in a kernel image', async () => {
    const folder = await temporaryFolder();
    const image = path.join(folder, 'Image.gz');
    const config = Buffer.from(await qwamosConfigText());
    await writeFile(image, gzipSync(Buffer.concat([Buffer.alloc(4096), Buffer.from('IKCFG_ST'), gzipSync(config), Buffer.from('IKCFG_ED'), Buffer.alloc(64)])));

    const { status, output } = await runCheck('--device', DEVICE, '--kernel', image, '--json');
    const report = JSON.parse(output) as { ok: boolean; source: unknown; version: string; failed: number };
    expect(status).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.source).toEqual({ kind: 'kernel', path: image });
    expect(report.version).toBe('6.1.192');
  });

  it('takes the version from --kernel-version', async () => {
    const folder = await temporaryFolder();
    const file = path.join(folder, 'fragment.config');
    await writeFile(file, (await qwamosConfigText()).replace(/^#.*\n/gm, ''));

    const error = await captureError(() => runCheck('--device', DEVICE, '--config', file));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain('pass the version with --kernel-version');

    const oldKernel = await runCheck('--device', DEVICE, '--config', file, '--kernel-version', '5.4');
    expect(oldKernel.status).toBe(1);
    expect(oldKernel.output).toContain('FAIL [kvm] kvm-arm-host: CONFIG_KVM_ARM_HOST is not set, expected y');
  });

  it('requires --device', async () => {
    const error = await captureError(() => runCheck('--config', 'x'));
    expect(error.code).toBe('USAGE');
    expect(error.message).toBe("kconfig check: missing --device DEVICE; run 'qwamos-build devices' for the list");
  });

  it('requires one config source', async () => {
    expect((await captureError(() => runCheck('--device', DEVICE))).message).toContain('missing --config FILE or --kernel IMAGE');
    expect((await captureError(() => runCheck('--device', DEVICE, '--config', 'a', '--kernel', 'b'))).message).toBe('kconfig check: give either --config or --kernel, not both');
  });

  it('rejects an unknown option', async () => {
    const error = await captureError(() => runCheck('--device', DEVICE, '--confg', 'x'));
    expect(error.code).toBe('USAGE');
    expect(error.exitStatus).toBe(2);
  });

  it('reports an unknown device', async () => {
    const error = await captureError(() => runCheck('--device', 'no-such-phone', '--config', 'x'));
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toMatch(/device profile .*device-profiles\/no-such-phone\.yaml does not exist/);
  });

  it('reports an invalid rule file', async () => {
    const folder = await temporaryFolder();
    const rules = path.join(folder, 'rules.yaml');
    const config = path.join(folder, '.config');
    await writeFile(rules, lines('schemaVersion: 1', 'rules:', '  kvm:', '    - id: x', '      options: { CONFIG_KVM: maybe }', '      reason: r'));
    await writeFile(config, await qwamosConfigText());

    const error = await captureError(() => runCheck('--device', DEVICE, '--config', config, '--rules', rules));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.details).toContain(`${rules}: /rules/kvm/0/options/CONFIG_KVM: must be y, m, n, a "quoted string", a decimal or a 0x hex number`);
  });
});
