/** The list of subcommands; `cli/main.ts` dispatches on their names. */
import type { Command } from '../command.js';

export const COMMANDS: Command[] = [];
