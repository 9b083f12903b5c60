/**
 * The shape every `qwamos-build` subcommand has, and the argument parsing
 * they share. Each command lives in its own file under cli/commands/.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { QwamosError } from '../core/errors.js';

export interface Command {
  /** Words that select the command, such as ['kconfig', 'check']. */
  name: string[];
  /** One line for the command list. */
  summary: string;
  /** Full `--help` text: usage line, then one line per option. */
  help: string;
  /** Runs the command and returns its exit status. */
  run(argv: string[]): Promise<number>;
}

type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/**
 * Parses `argv` strictly against `options` and turns parse errors into
 * USAGE errors that name the command, so a typo exits with status 2.
 */
export function parseCommandArgs<T extends OptionSpec>(command: string, argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new QwamosError('USAGE', `${command}: ${message}; run 'qwamos-build ${command} --help' for the options`);
  }
}

/** Prints `value` as indented JSON on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Formats rows as a left-aligned text table with a header row. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
