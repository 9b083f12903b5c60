import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { it } from 'vitest';
import { FastbootEmulator } from './fastboot-emulator.js';
const run = promisify(execFile);
it('scratch', async () => {
  const emu = new FastbootEmulator({ product: 'shiba', partitions: { boot_a: 2<<20, boot_b: 2<<20 }, maxDownloadSize: 1<<20, unlocked: false });
  const serial = await emu.start();
  const fb = async (...args: string[]) => {
    const r = await run('fastboot', ['-s', serial, ...args], { timeout: 4000 }).catch((e) => e);
    console.log('$ fastboot', args.join(' '), '->', r.code ?? 0, JSON.stringify(r.stdout), JSON.stringify(r.stderr));
  };
  await fb('getvar', 'nonesuch');
  await fb('getvar', 'current-slot');
  await fb('set_active', 'b');
  await fb('erase', 'boot_a');
  await fb('flash', 'nonesuch', '/etc/hostname');
  await fb('-S', '1K', 'flash', 'boot_a', '/etc/hostname');
  await emu.stop();
}, 60000);
