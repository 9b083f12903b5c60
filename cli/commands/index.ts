/** The list of subcommands; `cli/main.ts` dispatches on their names. */
import type { Command } from '../command.js';
import { bootTestCommand } from './boot-test.js';
import { buildCommand } from './build.js';
import { devicesCommand } from './devices.js';
import { doctorCommand } from './doctor.js';
import { kconfigCheckCommand } from './kconfig-check.js';
import { LOCK_COMMANDS } from './lock.js';
import { KEYS_COMMANDS } from './keys.js';
import { BOOTIMG_COMMANDS } from './bootimg.js';
import { SPARSE_COMMANDS } from './sparse.js';
import { AVB_COMMANDS } from './avb.js';
import { flashCommand } from './flash.js';
import { verifyCommand } from './verify.js';

export const COMMANDS: Command[] = [
  doctorCommand,
  devicesCommand,
  buildCommand,
  bootTestCommand,
  kconfigCheckCommand,
  ...LOCK_COMMANDS,
  ...KEYS_COMMANDS,
  ...BOOTIMG_COMMANDS,
  ...SPARSE_COMMANDS,
  ...AVB_COMMANDS,
  flashCommand,
  verifyCommand,
];
