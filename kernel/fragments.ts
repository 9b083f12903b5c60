/**
 * Merging config fragments onto a base `.config`. Every assignment in a
 * fragment becomes a requested option, and a later fragment overrides an
 * earlier one. Each requested option records the fragment that set it, so
 * that a dropped option can be traced back to its file.
 */
import path from 'node:path';
import { type ConfigValue, type KernelConfig, type ParsedConfigFile, readConfigFile } from './config-file.js';

export interface RequestedOption {
  symbol: string;
  value: ConfigValue;
  /** Path of the fragment that set the value. */
  fragment: string;
  /** Line number in that fragment. */
  line: number;
}

/** An option that two fragments set to different values; the later one wins. */
export interface FragmentOverride {
  symbol: string;
  earlier: RequestedOption;
  later: RequestedOption;
}

export interface MergedConfig {
  config: KernelConfig;
  /** Requested options keyed by symbol name, with the fragment that set each. */
  requested: Map<string, RequestedOption>;
  overrides: FragmentOverride[];
}

/** Reads fragment files in order. */
export async function readFragments(fragmentPaths: readonly string[]): Promise<ParsedConfigFile[]> {
  const fragments: ParsedConfigFile[] = [];
  for (const fragmentPath of fragmentPaths) fragments.push(await readConfigFile(fragmentPath));
  return fragments;
}

/** Applies `fragments` in order onto a copy of `base`. */
export function mergeFragments(base: KernelConfig, fragments: readonly ParsedConfigFile[]): MergedConfig {
  const values = new Map(base.values);
  const requested = new Map<string, RequestedOption>();
  const overrides: FragmentOverride[] = [];

  for (const fragment of fragments) {
    for (const [symbol, value] of fragment.values) {
      const option: RequestedOption = { symbol, value, fragment: fragment.fileName, line: fragment.lines.get(symbol) ?? 0 };
      const earlier = requested.get(symbol);
      if (earlier && earlier.value !== value) overrides.push({ symbol, earlier, later: option });

      requested.set(symbol, option);
      values.set(symbol, value);
    }
  }

  return {
    config: { values, headerArch: base.headerArch, headerVersion: base.headerVersion },
    requested,
    overrides,
  };
}

/** Names a fragment by its file name, for short messages. */
export function fragmentLabel(option: RequestedOption): string {
  return `${path.basename(option.fragment)}:${option.line}`;
}
