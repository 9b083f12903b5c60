/**
 * Kernel `.config` files and config fragments, which share one syntax:
 *
 *   CONFIG_NAME=y | m | "string" | 123 | 0x1f
 *   # CONFIG_NAME is not set
 *
 * Other lines starting with `#` are comments. Symbols are stored under their
 * Kconfig name without the `CONFIG_` prefix, as Kconfig files spell them.
 */
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { QwamosError } from '../core/errors.js';
import { runTool } from '../core/exec.js';

/**
 * The value of one symbol as written on the right of `=`: `y`, `m`, a quoted
 * string with its quotes, or a decimal or hex number. A symbol that is "not
 * set" has the value `n`.
 */
export type ConfigValue = string;

export interface KernelConfig {
  /** Symbol name without `CONFIG_` to value, in file order. */
  values: Map<string, ConfigValue>;
  /** Architecture from the header comment, such as `arm64` or `x86`. */
  headerArch?: string;
  /** Kernel version from the header comment, such as `6.1.192`. */
  headerVersion?: string;
}

/** A parsed file with the line number of each symbol, for messages. */
export interface ParsedConfigFile extends KernelConfig {
  fileName: string;
  lines: Map<string, number>;
}

const SET_LINE = /^CONFIG_([A-Za-z0-9_]+)=(.*)$/;
const NOT_SET_LINE = /^# CONFIG_([A-Za-z0-9_]+) is not set$/;
const HEADER_LINE = /^# Linux\/(\S+) (\S+) Kernel Configuration$/;
const VALUE = /^(?:y|m|n|"(?:[^"\\]|\\.)*"|-?[0-9]+|0[xX][0-9a-fA-F]+)$/;

/**
 * Parses `.config` or fragment text. Rejects a line that is neither a
 * comment nor a valid assignment, naming `fileName` and the line number.
 */
export function parseConfig(text: string, fileName: string): ParsedConfigFile {
  const result: ParsedConfigFile = { fileName, values: new Map(), lines: new Map() };
  const lines = text.split(/\r?\n/);

  lines.forEach((rawLine, index) => {
    const line = rawLine.trim();
    const lineNumber = index + 1;
    const header = HEADER_LINE.exec(line);
    if (header) {
      result.headerArch = header[1];
      result.headerVersion = header[2];
      return;
    }

    const notSet = NOT_SET_LINE.exec(line);
    if (notSet) {
      setValue(result, notSet[1]!, 'n', lineNumber);
      return;
    }

    if (line === '' || line.startsWith('#')) return;

    const assignment = SET_LINE.exec(line);
    if (!assignment) {
      throw new QwamosError('INPUT_INVALID', `${fileName}:${lineNumber}: '${line}' is not a kernel config line; write CONFIG_NAME=value or '# CONFIG_NAME is not set'`);
    }
    const value = assignment[2]!.trim();
    if (!VALUE.test(value)) {
      throw new QwamosError('INPUT_INVALID', `${fileName}:${lineNumber}: invalid value '${value}' for CONFIG_${assignment[1]}; expected y, m, n, a "quoted string", a decimal or a 0x hex number`);
    }
    setValue(result, assignment[1]!, value, lineNumber);
  });

  return result;
}

function setValue(config: ParsedConfigFile, symbol: string, value: ConfigValue, lineNumber: number): void {
  // A later line for the same symbol wins, as in Kconfig; re-inserting keeps
  // the symbol at its first position.
  config.values.set(symbol, value);
  if (!config.lines.has(symbol)) config.lines.set(symbol, lineNumber);
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/**
 * Reads and parses a `.config` or fragment file. A gzip- or xz-compressed
 * file, such as the config.*.xz files of Debian's linux-config-6.1 package,
 * is decompressed first.
 */
export async function readConfigFile(filePath: string): Promise<ParsedConfigFile> {
  const data = await readFile(filePath).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `kernel config file ${filePath} does not exist`);
    throw error;
  });
  return parseConfig(await decompressConfig(data, filePath), filePath);
}

async function decompressConfig(data: Buffer, filePath: string): Promise<string> {
  if (data.subarray(0, GZIP_MAGIC.length).equals(GZIP_MAGIC)) {
    try {
      return gunzipSync(data).toString('utf8');
    } catch (error) {
      throw new QwamosError('INPUT_INVALID', `${filePath} starts like a gzip file but does not decompress: ${(error as Error).message}`, { cause: error });
    }
  }
  if (data.subarray(0, XZ_MAGIC.length).equals(XZ_MAGIC)) {
    // --decompress --stdout: the file itself is left as it is.
    return (await runTool('xz', ['--decompress', '--stdout', filePath])).stdout;
  }
  return data.toString('utf8');
}

/** Formats a config as `.config` text, one line per symbol, `n` as "is not set". */
export function formatConfig(config: KernelConfig): string {
  const lines: string[] = [];
  if (config.headerArch && config.headerVersion) {
    lines.push('#', `# Linux/${config.headerArch} ${config.headerVersion} Kernel Configuration`, '#');
  }
  for (const [symbol, value] of config.values) lines.push(formatLine(symbol, value));
  return `${lines.join('\n')}\n`;
}

/** Formats one symbol as its `.config` line. */
export function formatLine(symbol: string, value: ConfigValue): string {
  return value === 'n' ? `# CONFIG_${symbol} is not set` : `CONFIG_${symbol}=${value}`;
}

/**
 * Returns the value of `symbol`, with `n` for a symbol that the file does
 * not mention: Kconfig writes no line at all for a symbol whose
 * dependencies are unmet.
 */
export function configValue(config: KernelConfig, symbol: string): ConfigValue {
  return config.values.get(symbol) ?? 'n';
}

/** Compares two values, hex numbers by their numeric value. */
export function configValuesEqual(a: ConfigValue, b: ConfigValue): boolean {
  if (a === b) return true;
  const hex = /^0[xX][0-9a-fA-F]+$/;
  if (hex.test(a) && hex.test(b)) return BigInt(a) === BigInt(b);
  return false;
}
