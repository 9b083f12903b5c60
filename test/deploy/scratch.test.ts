import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { it } from 'vitest';
import { FastbootEmulator } from './fastboot-emulator.js';
const run = promisify(execFile);
it('scratch', async () => {
  const emu = new FastbootEmulator({ product: 'shiba', partitions: { boot_a: 2<<20, boot_b: 2<<20 }, maxDownloadSize: 1<<20 });
  const serial = await emu.start();
  const fb = async (...args: string[]) => {
    const t = Date.now();
    const r = await run('fastboot', ['-s', serial, ...args], { timeout: 4000 }).catch((e) => e);
    console.log('$ fastboot', args.join(' '), '->', r.code ?? 0, r.signal, Date.now()-t, JSON.stringify(r.stdout), JSON.stringify(r.stderr));
    console.log('   emu:', JSON.stringify(emu.commands.splice(0)));
  };
  writeFileSync('/tmp/fbscratch/mid.img', randomBytes(900000));
  emu.interruptNextDownload(300000);
  await fb('flash', 'boot_b', '/tmp/fbscratch/mid.img');
  await fb('flash', 'boot_b', '/tmp/fbscratch/mid.img');
  await emu.stop();
  await fb('getvar', 'product');
}, 60000);
