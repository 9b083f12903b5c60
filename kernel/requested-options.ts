/**
 * The requested-option check: after `make olddefconfig`, every option that a
 * fragment set must have the requested value in the final `.config`. The
 * reason for each dropped option comes from the Kconfig files. It is one of
 * the unmet `depends on`, `if` or `menu` conditions (with the symbols that
 * are off), a missing prompt, a `select` from another symbol, or a symbol
 * that does not exist in this kernel version.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { type ConfigValue, type KernelConfig, configValue, configValuesEqual, formatLine } from './config-file.js';
import { type Tristate, blockingSymbols, evaluate, parseExpression } from './kconfig-expression.js';
import { type KconfigCondition, type KconfigDefinition, type KconfigIndex, findDefinitions } from './kconfig-index.js';
import { type RequestedOption, fragmentLabel } from './fragments.js';

/** A condition of a dropped option that the final config does not meet. */
export interface UnmetCondition extends KconfigCondition {
  /** Symbols of the condition that keep it false, with their final values. */
  blocking: { symbol: string; value: ConfigValue }[];
}

export interface DroppedOption {
  symbol: string;
  requested: ConfigValue;
  actual: ConfigValue;
  fragment: string;
  fragmentLine: number;
  /** One sentence that explains why Kconfig changed the value. */
  reason: string;
  /** True when no Kconfig file of this kernel and architecture defines the symbol. */
  missingSymbol: boolean;
  unmetConditions: UnmetCondition[];
  /** Symbols that force the value through `select`, with their `select` line. */
  selectedBy: { symbol: string; file: string; line: number }[];
}

export interface RequestedOptionsReport {
  ok: boolean;
  checked: number;
  dropped: DroppedOption[];
}

/**
 * Compares each requested option with the final config and explains the
 * dropped ones from `index`. A function for `index` is called only when an
 * option was dropped, so a passing check skips indexing the Kconfig tree.
 */
export async function checkRequestedOptions(
  requested: ReadonlyMap<string, RequestedOption>,
  finalConfig: KernelConfig,
  index: KconfigIndex | (() => Promise<KconfigIndex>),
): Promise<RequestedOptionsReport> {
  const dropped: DroppedOption[] = [];
  let loaded = typeof index === 'function' ? undefined : index;

  for (const option of requested.values()) {
    const actual = configValue(finalConfig, option.symbol);
    if (configValuesEqual(actual, option.value)) continue;
    loaded ??= await (index as () => Promise<KconfigIndex>)();
    dropped.push(await explainDroppedOption(option, actual, finalConfig, loaded));
  }

  return { ok: dropped.length === 0, checked: requested.size, dropped };
}

async function explainDroppedOption(option: RequestedOption, actual: ConfigValue, config: KernelConfig, index: KconfigIndex): Promise<DroppedOption> {
  const base = { symbol: option.symbol, requested: option.value, actual, fragment: option.fragment, fragmentLine: option.line };
  const definitions = findDefinitions(index, option.symbol);

  if (definitions.length === 0) {
    const otherArches = await archesDefining(index, option.symbol);
    const where = otherArches.length > 0 ? `; only arch ${otherArches.join(', ')} define${otherArches.length === 1 ? 's' : ''} it` : '';
    return {
      ...base,
      reason: `symbol does not exist in this kernel version for ${index.arch} (no Kconfig file under ${index.sourceRoot} defines it${where})`,
      missingSymbol: true,
      unmetConditions: [],
      selectedBy: [],
    };
  }

  const needed: Tristate = option.value === 'm' ? 1 : 2;
  const unmetConditions = option.value === 'n' ? [] : definitions.flatMap((definition) => unmetConditionsOf(definition, config, needed));
  const selectedBy = activeSelectors(index, option.symbol, config);
  const reason = describeReason(option, actual, definitions, unmetConditions, selectedBy);

  return { ...base, reason, missingSymbol: false, unmetConditions, selectedBy };
}

function unmetConditionsOf(definition: KconfigDefinition, config: KernelConfig, needed: Tristate): UnmetCondition[] {
  const unmet: UnmetCondition[] = [];
  for (const condition of [...definition.ownConditions, ...definition.enclosingConditions]) {
    const expression = parseExpression(condition.expression);
    if (evaluate(expression, config) >= needed) continue;

    const blocking = blockingSymbols(expression, config, needed).map((symbol) => ({ symbol, value: configValue(config, symbol) }));
    unmet.push({ ...condition, blocking });
  }
  return unmet;
}

/** Symbols that are on and `select` the target, with a true `if` condition. */
function activeSelectors(index: KconfigIndex, symbol: string, config: KernelConfig): DroppedOption['selectedBy'] {
  const entries = index.reverseDependencies.get(symbol) ?? [];
  return entries
    .filter((entry) => entry.kind === 'select')
    .filter((entry) => configValue(config, entry.selector) === 'y' || configValue(config, entry.selector) === 'm')
    .filter((entry) => entry.condition === undefined || evaluate(parseExpression(entry.condition), config) > 0)
    .map((entry) => ({ symbol: entry.selector, file: entry.file, line: entry.line }));
}

function describeReason(
  option: RequestedOption,
  actual: ConfigValue,
  definitions: KconfigDefinition[],
  unmet: UnmetCondition[],
  selectedBy: DroppedOption['selectedBy'],
): string {
  const result = `${fragmentLabel(option)} requested ${formatLine(option.symbol, option.value)} but the final config has ${formatLine(option.symbol, actual)}`;

  if (unmet.length > 0) {
    return `${result}: ${unmet.map(describeCondition).join('; ')}`;
  }

  if (option.value === 'n' && selectedBy.length > 0) {
    return `${result}: selected by ${selectedBy.map((entry) => `${entry.symbol} (${entry.file}:${entry.line})`).join(', ')}, which ${selectedBy.length === 1 ? 'is' : 'are'} on`;
  }

  const first = definitions[0]!;
  if (definitions.every((definition) => definition.prompt === undefined)) {
    const defaults = first.defaults.length > 0 ? `; its defaults: ${first.defaults.join(', ')}` : '';
    return `${result}: the symbol has no prompt (${first.file}:${first.line}), so a config file cannot set it; only 'select' from another symbol or its 'default' sets it${defaults}`;
  }

  if (first.choice) {
    return `${result}: the symbol is a member of the choice at ${first.choice.file}:${first.choice.line}, and Kconfig keeps exactly one member set to y`;
  }

  return `${result}: its dependencies are met; check the 'range', 'select' and 'default' lines at ${first.file}:${first.line}`;
}

function describeCondition(condition: UnmetCondition): string {
  const blocking = condition.blocking.length > 0
    ? ` (${condition.blocking.map((entry) => (entry.value === 'n' ? `${entry.symbol} is off` : `${entry.symbol}=${entry.value}`)).join(', ')})`
    : '';
  return `'${condition.kind} ${condition.expression}' at ${condition.file}:${condition.line} is not met${blocking}`;
}

/** Lists the other architectures whose Kconfig files define `symbol`. */
async function archesDefining(index: KconfigIndex, symbol: string): Promise<string[]> {
  const archRoot = path.join(index.sourceRoot, 'arch');
  const arches = await readdir(archRoot, { withFileTypes: true }).catch(() => []);
  const found: string[] = [];

  for (const arch of arches) {
    if (!arch.isDirectory() || arch.name === index.arch) continue;
    if (await archDefines(path.join(archRoot, arch.name), symbol)) found.push(arch.name);
  }
  return found;
}

async function archDefines(folder: string, symbol: string): Promise<boolean> {
  const entries = await readdir(folder, { withFileTypes: true, recursive: true }).catch(() => []);
  const definition = new RegExp(`^\\s*(?:menu)?config\\s+${symbol}\\s*$`, 'm');

  for (const entry of entries) {
    if (!entry.isFile() || !entry.name.startsWith('Kconfig')) continue;
    const text = await readFile(path.join(entry.parentPath, entry.name), 'utf8');
    if (definition.test(text)) return true;
  }
  return false;
}
