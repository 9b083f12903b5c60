/**
 * Requirement rules for kernel configs (kernel-configs/rules.yaml): each rule
 * names options with their expected values, the reason QWAMOS needs them,
 * and the architectures and kernel versions it applies to. The file is
 * validated against schemas/kernel-rules.schema.json with ajv.
 */
import { readFile } from 'node:fs/promises';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { QwamosError } from '../core/errors.js';
import { type ConfigValue, type KernelConfig, configValue, configValuesEqual } from './config-file.js';
import { kernelRulesSchemaPath } from './paths.js';

export const RULE_CATEGORIES = ['kvm', 'virtio', 'verity', 'erofs', 'console', 'initramfs', 'hardening'] as const;
export type RuleCategory = (typeof RULE_CATEGORIES)[number];

export interface KernelRule {
  id: string;
  category: RuleCategory;
  /** Symbols without `CONFIG_`, each with the values that pass. */
  options: { symbol: string; accepted: ConfigValue[] }[];
  reason: string;
  /** Architectures the rule applies to; all when absent. */
  architectures?: string[];
  /** First kernel version the rule applies to (inclusive). */
  minVersion?: string;
  /** First kernel version the rule no longer applies to (exclusive). */
  beforeVersion?: string;
}

export interface RuleSet {
  fileName: string;
  rules: KernelRule[];
}

export type RuleStatus = 'pass' | 'fail' | 'skip';

export interface RuleResult {
  id: string;
  category: RuleCategory;
  status: RuleStatus;
  reason: string;
  /** Reason a skipped rule does not apply, such as another architecture. */
  skipReason?: string;
  options: { symbol: string; accepted: ConfigValue[]; actual: ConfigValue; ok: boolean }[];
}

export interface RulesReport {
  ok: boolean;
  arch: string;
  version?: string;
  passed: number;
  failed: number;
  skipped: number;
  results: RuleResult[];
}

interface RuleFile {
  schemaVersion: 1;
  rules: Partial<Record<RuleCategory, {
    id: string;
    options: Record<string, string | number | (string | number)[]>;
    reason: string;
    architectures?: string[];
    minVersion?: string;
    beforeVersion?: string;
  }[]>>;
}

/** Reads, validates and loads a rule file. */
export async function loadRules(filePath: string): Promise<RuleSet> {
  const text = await readFile(filePath, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `kernel rule file ${filePath} does not exist`);
    throw error;
  });
  return parseRules(text, filePath);
}

/** Validates rule file text; `fileName` is used in messages. */
export async function parseRules(text: string, fileName: string): Promise<RuleSet> {
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new QwamosError('INPUT_INVALID', `${fileName}: invalid YAML: ${(error as Error).message}`, { cause: error });
  }

  await validateAgainstSchema(document, fileName);
  const rules = toRules(document as RuleFile);
  checkRuleSemantics(rules, fileName);
  return { fileName, rules };
}

let compiledValidator: ((data: unknown) => boolean) & { errors?: ErrorObject[] | null } | undefined;

async function validateAgainstSchema(document: unknown, fileName: string): Promise<void> {
  if (!compiledValidator) {
    const schema = JSON.parse(await readFile(kernelRulesSchemaPath(), 'utf8')) as object;
    compiledValidator = new Ajv({ allErrors: true, strict: true }).compile(schema);
  }
  if (compiledValidator(document)) return;

  const problems = (compiledValidator.errors ?? []).map(formatSchemaError);
  const unique = [...new Set(problems)];
  throw new QwamosError('INPUT_INVALID', `${fileName} does not match the kernel rule schema: ${unique[0]}`, {
    details: unique.map((problem) => `${fileName}: ${problem}`),
    data: { file: fileName, errors: compiledValidator.errors },
  });
}

/** Formats one ajv error as "<JSON pointer>: <what was expected>". */
function formatSchemaError(error: ErrorObject): string {
  const pointer = error.instancePath === '' ? '/' : error.instancePath;
  const params = error.params as Record<string, unknown>;
  let message = error.message ?? 'is invalid';

  if (error.keyword === 'additionalProperties') message += ` ('${String(params.additionalProperty)}')`;
  if (error.keyword === 'propertyNames') message = `property name '${String(params.propertyName)}' is invalid: option names are CONFIG_ followed by letters, digits and _`;
  if (error.keyword === 'const') message += ` (${JSON.stringify(params.allowedValue)})`;
  if (error.keyword === 'pattern' && pointer.includes('/options/')) message = 'must be y, m, n, a "quoted string", a decimal or a 0x hex number';
  return `${pointer}: ${message}`;
}

function toRules(file: RuleFile): KernelRule[] {
  const rules: KernelRule[] = [];
  for (const category of RULE_CATEGORIES) {
    for (const entry of file.rules[category] ?? []) {
      rules.push({
        id: entry.id,
        category,
        options: Object.entries(entry.options).map(([name, expected]) => ({
          symbol: name.replace(/^CONFIG_/, ''),
          accepted: (Array.isArray(expected) ? expected : [expected]).map(String),
        })),
        reason: entry.reason,
        ...(entry.architectures ? { architectures: entry.architectures } : {}),
        ...(entry.minVersion ? { minVersion: entry.minVersion } : {}),
        ...(entry.beforeVersion ? { beforeVersion: entry.beforeVersion } : {}),
      });
    }
  }
  return rules;
}

/** Checks what the schema cannot express: unique ids and ordered version bounds. */
function checkRuleSemantics(rules: KernelRule[], fileName: string): void {
  const seen = new Set<string>();
  for (const rule of rules) {
    if (seen.has(rule.id)) {
      throw new QwamosError('INPUT_INVALID', `${fileName}: rule id '${rule.id}' is used twice (/rules/${rule.category}); give each rule a unique id`);
    }
    seen.add(rule.id);

    if (rule.minVersion && rule.beforeVersion && compareVersions(rule.minVersion, rule.beforeVersion) >= 0) {
      throw new QwamosError('INPUT_INVALID', `${fileName}: rule '${rule.id}' (/rules/${rule.category}) has minVersion ${rule.minVersion} not below beforeVersion ${rule.beforeVersion}, so it never applies`);
    }
  }
}

/** Parses the leading numbers of a kernel version such as `6.1.0-57-amd64`. */
export function parseKernelVersion(version: string): number[] {
  const match = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(version);
  if (!match) {
    throw new QwamosError('INPUT_INVALID', `'${version}' is not a kernel version; expected a form like 6.1 or 6.1.192`);
  }
  return [match[1], match[2], match[3]].map((part) => Number(part ?? 0));
}

/** Compares kernel versions by their numbers: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const left = parseKernelVersion(a);
  const right = parseKernelVersion(b);
  for (let index = 0; index < 3; index++) {
    const difference = left[index]! - right[index]!;
    if (difference !== 0) return difference;
  }
  return 0;
}

/** Returns why a rule does not apply to `arch` and `version`, or undefined when it applies. */
function skipReasonFor(rule: KernelRule, arch: string, version: string | undefined): string | undefined {
  if (rule.architectures && !rule.architectures.includes(arch)) {
    return `applies to ${rule.architectures.join(', ')}, not ${arch}`;
  }
  if (!rule.minVersion && !rule.beforeVersion) return undefined;

  if (version === undefined) {
    throw new QwamosError('INPUT_INVALID', `rule '${rule.id}' depends on the kernel version, which is unknown: the config has no '# Linux/<arch> <version> Kernel Configuration' header; pass the version with --kernel-version`);
  }
  if (rule.minVersion && compareVersions(version, rule.minVersion) < 0) return `applies from Linux ${rule.minVersion}, the kernel is ${version}`;
  if (rule.beforeVersion && compareVersions(version, rule.beforeVersion) >= 0) return `applies before Linux ${rule.beforeVersion}, the kernel is ${version}`;
  return undefined;
}

/**
 * Checks `config` against each rule that applies to `arch` and `version`.
 * Throws INPUT_INVALID when a rule has a version range and `version` is
 * undefined.
 */
export function checkConfigAgainstRules(config: KernelConfig, rules: readonly KernelRule[], target: { arch: string; version?: string }): RulesReport {
  const results: RuleResult[] = rules.map((rule) => {
    const skipReason = skipReasonFor(rule, target.arch, target.version);
    const options = rule.options.map((option) => {
      const actual = configValue(config, option.symbol);
      return { ...option, actual, ok: option.accepted.some((value) => configValuesEqual(value, actual)) };
    });

    let status: RuleStatus = options.every((option) => option.ok) ? 'pass' : 'fail';
    if (skipReason) status = 'skip';
    return { id: rule.id, category: rule.category, status, reason: rule.reason, ...(skipReason ? { skipReason } : {}), options };
  });

  const count = (status: RuleStatus): number => results.filter((result) => result.status === status).length;
  return {
    ok: count('fail') === 0,
    arch: target.arch,
    ...(target.version ? { version: target.version } : {}),
    passed: count('pass'),
    failed: count('fail'),
    skipped: count('skip'),
    results,
  };
}

/** Formats a failed rule as one line: category, id, each wrong option and the reason. */
export function describeFailedRule(result: RuleResult): string {
  const wrong = result.options
    .filter((option) => !option.ok)
    .map((option) => `CONFIG_${option.symbol} is ${option.actual === 'n' ? 'not set' : option.actual}, expected ${option.accepted.join(' or ')}`);
  return `[${result.category}] ${result.id}: ${wrong.join('; ')} (${result.reason})`;
}
