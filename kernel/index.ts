/** The kernel module's public API: config files, fragments, Kconfig checks, rules and the build steps. */
export { type ConfigValue, type KernelConfig, type ParsedConfigFile, configValue, formatConfig, parseConfig, readConfigFile } from './config-file.js';
export { type FragmentOverride, type MergedConfig, type RequestedOption, mergeFragments, readFragments } from './fragments.js';
export { type KconfigDefinition, type KconfigIndex, findDefinitions, indexKconfig } from './kconfig-index.js';
export { type DroppedOption, type RequestedOptionsReport, checkRequestedOptions } from './requested-options.js';
export { type KernelRule, type RuleResult, type RuleSet, type RulesReport, RULE_CATEGORIES, checkConfigAgainstRules, compareVersions, describeFailedRule, loadRules, parseRules } from './rules.js';
export { readConfigFromKernelImage, readConfigFromKernelImageFile } from './ikconfig.js';
export { type ConfigureOptions, type ConfigureResult, configureKernel } from './configure.js';
export { type CompileOptions, type CompileResult, buildEnvironment, compileKernel, extractBuildErrors, formatBuildTimestamp } from './compile.js';
export { type KernelTree } from './make.js';
export { DEFAULT_FRAGMENT_NAMES, defaultFragmentPaths, defaultRulesPath } from './paths.js';
