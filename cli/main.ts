/**
 * Entry point of the `qwamos-build` command: selects the subcommand by its
 * leading words, runs it, and turns errors into messages and exit statuses
 * (0 success, 1 build or check failure, 2 invalid usage or input).
 */
import { isQwamosError } from '../core/errors.js';
import type { Command } from './command.js';
import { COMMANDS } from './commands/index.js';

const USAGE = `Usage: qwamos-build COMMAND [OPTIONS]

Builds, signs, boot-tests and flashes QWAMOS images.

Commands:
${COMMANDS.map((command) => `  ${command.name.join(' ').padEnd(28)}${command.summary}`).join('\n')}

Run 'qwamos-build COMMAND --help' for the options of one command.`;

/** Finds the command whose name matches the longest prefix of argv. */
function selectCommand(argv: string[]): { command: Command; rest: string[] } | undefined {
  const matches = COMMANDS.filter((command) => command.name.every((word, index) => argv[index] === word));
  matches.sort((a, b) => b.name.length - a.name.length);
  const command = matches[0];
  return command ? { command, rest: argv.slice(command.name.length) } : undefined;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return argv.length === 0 ? 2 : 0;
  }

  const selected = selectCommand(argv);
  const group = COMMANDS.filter((command) => command.name.length > 1 && command.name[0] === argv[0]);
  if (!selected && group.length > 0) {
    const helpRequested = argv.length === 1 || argv[1] === '--help' || argv[1] === '-h';
    const list = group.map((command) => `  ${command.name.join(' ').padEnd(28)}${command.summary}`).join('\n');
    const text = `Usage: qwamos-build ${argv[0]} SUBCOMMAND [OPTIONS]\n\nSubcommands:\n${list}\n\nRun 'qwamos-build ${argv[0]} SUBCOMMAND --help' for the options of one subcommand.\n`;
    if (helpRequested) {
      process.stdout.write(text);
      return argv.length === 1 ? 2 : 0;
    }
    process.stderr.write(`qwamos-build: unknown subcommand '${argv.slice(0, 2).join(' ')}'\n\n${text}`);
    return 2;
  }
  if (!selected) {
    process.stderr.write(`qwamos-build: unknown command '${argv.join(' ')}'\n\n${USAGE}\n`);
    return 2;
  }

  if (selected.rest.includes('--help') || selected.rest.includes('-h')) {
    process.stdout.write(`${selected.command.help}\n`);
    return 0;
  }

  const json = selected.rest.includes('--json');
  try {
    return await selected.command.run(selected.rest);
  } catch (error) {
    return reportError(error, json);
  }
}

/** Prints an error as text or, with --json, as a JSON object on stdout. */
function reportError(error: unknown, json: boolean): number {
  if (!isQwamosError(error)) {
    const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`qwamos-build: internal error: ${text}\n`);
    return 1;
  }

  if (json) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: error.toJSON() }, null, 2)}\n`);
  } else {
    process.stderr.write(`qwamos-build: error: ${error.message}\n`);
    for (const line of error.details) process.stderr.write(`  ${line}\n`);
  }
  return error.exitStatus;
}
