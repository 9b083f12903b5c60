/**
 * `qwamos-build kconfig check`: runs the kernel requirement rules on a
 * `.config` file (plain, gzip or xz) or on the config embedded in a kernel
 * image built with CONFIG_IKCONFIG.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { QwamosError } from '../../core/errors.js';
import { type KernelConfig, parseConfig, readConfigFile } from '../../kernel/config-file.js';
import { readConfigFromKernelImageFile } from '../../kernel/ikconfig.js';
import { defaultRulesPath, packageRoot } from '../../kernel/paths.js';
import { type RulesReport, checkConfigAgainstRules, describeFailedRule, loadRules } from '../../kernel/rules.js';
import { parseCommandArgs, printJson, type Command } from '../command.js';

const OPTIONS = {
  device: { type: 'string' },
  config: { type: 'string' },
  kernel: { type: 'string' },
  rules: { type: 'string' },
  'kernel-version': { type: 'string' },
  json: { type: 'boolean' },
} as const;

/**
 * Reads the `arch` field of device-profiles/<device>.yaml.
 * TODO: use the shared device profile loader once it exists.
 */
export async function readDeviceArch(device: string): Promise<string> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(device)) {
    throw new QwamosError('USAGE', `invalid device name '${device}'; run 'qwamos-build devices' for the list`);
  }

  const profilePath = path.join(packageRoot(), 'device-profiles', `${device}.yaml`);
  const text = await readFile(profilePath, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `device profile ${profilePath} does not exist; run 'qwamos-build devices' for the list`);
    throw error;
  });

  const profile = parseYaml(text) as { arch?: unknown } | null;
  if (typeof profile?.arch !== 'string' || profile.arch === '') {
    throw new QwamosError('INPUT_INVALID', `${profilePath}: field 'arch' is missing or not a string; set it to the kernel architecture, such as arm64`);
  }
  return profile.arch;
}

async function readInputConfig(values: { config?: string; kernel?: string }): Promise<{ config: KernelConfig; source: { kind: 'config' | 'kernel'; path: string } }> {
  if (values.config !== undefined && values.kernel !== undefined) {
    throw new QwamosError('USAGE', 'kconfig check: give either --config or --kernel, not both');
  }
  if (values.kernel !== undefined) {
    const text = await readConfigFromKernelImageFile(values.kernel);
    return { config: parseConfig(text, `${values.kernel} (embedded config)`), source: { kind: 'kernel', path: values.kernel } };
  }
  if (values.config !== undefined) {
    return { config: await readConfigFile(values.config), source: { kind: 'config', path: values.config } };
  }
  throw new QwamosError('USAGE', "kconfig check: missing --config FILE or --kernel IMAGE; run 'qwamos-build kconfig check --help' for the options");
}

function printText(report: RulesReport, heading: string, warnings: string[]): void {
  const lines = [heading, ...warnings.map((warning) => `warning: ${warning}`)];
  for (const result of report.results) {
    if (result.status === 'fail') lines.push(`FAIL ${describeFailedRule(result)}`);
  }
  lines.push(`${report.failed} failed, ${report.passed} passed, ${report.skipped} skipped`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

export const kconfigCheckCommand: Command = {
  name: ['kconfig', 'check'],
  summary: 'check a kernel .config or IKCONFIG kernel image against the kernel rules',
  help: `Usage: qwamos-build kconfig check --device DEVICE (--config FILE | --kernel IMAGE) [options]

Checks a kernel configuration against the requirement rules in
kernel-configs/rules.yaml for the architecture of DEVICE. Prints one line
per failed rule with its category. Exits with 1 when a rule fails.

Options:
  --device DEVICE          device profile name (device-profiles/DEVICE.yaml); selects the architecture
  --config FILE            kernel .config to check; gzip- and xz-compressed files are accepted
  --kernel IMAGE           kernel Image or Image.gz built with CONFIG_IKCONFIG; its embedded config is checked
  --rules FILE             rule file to use instead of kernel-configs/rules.yaml
  --kernel-version VERSION kernel version such as 6.1.192, for configs without the version header
  --json                   print the full report as JSON`,

  async run(argv) {
    const { values } = parseCommandArgs('kconfig check', argv, OPTIONS);
    if (values.device === undefined) {
      throw new QwamosError('USAGE', "kconfig check: missing --device DEVICE; run 'qwamos-build devices' for the list");
    }

    const arch = await readDeviceArch(values.device);
    const { config, source } = await readInputConfig(values);
    const ruleSet = await loadRules(values.rules ?? defaultRulesPath());
    const version = values['kernel-version'] ?? config.headerVersion;
    const report = checkConfigAgainstRules(config, ruleSet.rules, { arch, ...(version ? { version } : {}) });

    const warnings: string[] = [];
    if (config.headerArch && config.headerArch !== arch) {
      warnings.push(`${source.path} is a Linux/${config.headerArch} config, but device ${values.device} is ${arch}; rules were checked for ${arch}`);
    }

    if (values.json) {
      printJson({ device: values.device, source, configArch: config.headerArch ?? null, rulesFile: ruleSet.fileName, warnings, ...report });
    } else {
      const described = config.headerArch ? ` (Linux/${config.headerArch} ${config.headerVersion})` : '';
      printText(report, `kconfig check: ${source.path}${described} for ${values.device} (${arch}), kernel version ${version ?? 'unknown'}`, warnings);
    }
    return report.ok ? 0 : 1;
  },
};
