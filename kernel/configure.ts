/**
 * The kernel configure step: a base config from a make target such as
 * `tinyconfig`, the config fragments merged on top, `make olddefconfig`,
 * then the requested-option check and the requirement rules on the final
 * `.config`. Any dropped option or failed rule stops the build with
 * KCONFIG_CHECK_FAILED.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import { type KernelConfig, formatConfig, formatLine, readConfigFile } from './config-file.js';
import { type FragmentOverride, fragmentLabel, mergeFragments, readFragments } from './fragments.js';
import { indexKconfig } from './kconfig-index.js';
import { type KernelTree, checkBuildTools, kernelArch, runMake, sourceArch } from './make.js';
import { defaultFragmentPaths, defaultRulesPath } from './paths.js';
import { type RequestedOptionsReport, checkRequestedOptions } from './requested-options.js';
import { type RuleSet, type RulesReport, checkConfigAgainstRules, describeFailedRule, loadRules } from './rules.js';

export interface ConfigureOptions extends KernelTree {
  /** Make target that writes the base config, such as `tinyconfig` or `defconfig`. */
  baseConfig?: string;
  /** Fragment paths in merge order; defaults to the shipped kernel-configs/fragments. */
  fragments?: string[];
  /** Requirement rules, or a rule file path; defaults to kernel-configs/rules.yaml. */
  rules?: RuleSet | string;
}

export interface ConfigureResult {
  /** Path of the final `.config` in the build folder. */
  configPath: string;
  config: KernelConfig;
  /** Kernel version from the final config's header, such as `6.1.192`. */
  kernelVersion?: string;
  requested: RequestedOptionsReport;
  rules: RulesReport;
  /** Options that a later fragment set to another value than an earlier one. */
  overrides: FragmentOverride[];
}

/**
 * Writes the final `.config` into `buildDir` and checks it. Throws
 * KCONFIG_CHECK_FAILED listing each dropped option with its reason and each
 * failed rule.
 */
export async function configureKernel(options: ConfigureOptions): Promise<ConfigureResult> {
  await checkBuildTools(options);
  await mkdir(options.buildDir, { recursive: true });
  await mkdir(path.dirname(options.logFile), { recursive: true });
  const configPath = path.join(options.buildDir, '.config');

  await runMake(options, [options.baseConfig ?? 'tinyconfig']);
  const base = await readConfigFile(configPath);

  const fragments = await readFragments(options.fragments ?? defaultFragmentPaths());
  const merged = mergeFragments(base, fragments);
  for (const override of merged.overrides) {
    options.onLine?.(`note: ${fragmentLabel(override.later)} overrides ${formatLine(override.symbol, override.earlier.value)} from ${fragmentLabel(override.earlier)}`);
  }
  await writeFileAtomic(configPath, formatConfig(merged.config));

  // olddefconfig: keep every value from .config and give new or invalid
  // symbols their defaults, without prompting.
  await runMake(options, ['olddefconfig']);
  const config = await readConfigFile(configPath);

  const index = (): ReturnType<typeof indexKconfig> => indexKconfig(options.sourceDir, { arch: sourceArch(options), archVariable: kernelArch(options) });
  const requested = await checkRequestedOptions(merged.requested, config, index);
  const ruleSet = typeof options.rules === 'object' ? options.rules : await loadRules(options.rules ?? defaultRulesPath());
  const rules = checkConfigAgainstRules(config, ruleSet.rules, { arch: sourceArch(options), ...(config.headerVersion ? { version: config.headerVersion } : {}) });

  const result: ConfigureResult = {
    configPath,
    config,
    ...(config.headerVersion ? { kernelVersion: config.headerVersion } : {}),
    requested,
    rules,
    overrides: merged.overrides,
  };
  if (!requested.ok || !rules.ok) throw configureFailure(result);
  return result;
}

function configureFailure(result: ConfigureResult): QwamosError {
  const dropped = result.requested.dropped.map((option) => `CONFIG_${option.symbol}: ${option.reason}`);
  const failed = result.rules.results.filter((rule) => rule.status === 'fail').map((rule) => `rule ${describeFailedRule(rule)}`);
  const counts = [
    dropped.length > 0 ? `${dropped.length} requested option${dropped.length === 1 ? ' was' : 's were'} dropped by Kconfig` : '',
    failed.length > 0 ? `${failed.length} requirement rule${failed.length === 1 ? '' : 's'} failed` : '',
  ].filter(Boolean).join(' and ');

  return new QwamosError('KCONFIG_CHECK_FAILED', `kernel config check failed for ${result.configPath}: ${counts}; fix the fragments or rules listed below`, {
    details: [...dropped, ...failed],
    data: { configPath: result.configPath, requested: result.requested, rules: result.rules },
  });
}
