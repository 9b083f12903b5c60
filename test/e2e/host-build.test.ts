/**
 * End-to-end: builds the default qemu-virt-arm64 host image from the real
 * pinned Debian sources with the real CLI, checks its dm-verity tree with
 * veritysetup, boots it in QEMU, and checks caching and tamper detection.
 * The first run compiles a kernel (minutes); later runs reuse the cache.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, open, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { COUNTER_STORE_FILE_SIZE, encodeCounterStore } from '../../signing/manifest-counters.js';
import { DEV_PASSPHRASE } from '../../signing/keys-passphrase.js';
import { decryptStoredKey } from '../../signing/keys-private.js';
import { getKey, loadKeyStore } from '../../signing/keys-store.js';
import { localMldsaSigner } from '../../signing/mldsa.js';
import { parseManifest } from '../../signing/manifest-parse.js';
import { signManifest } from '../../signing/manifest-sign.js';

const run = promisify(execFile);
const CLI = path.resolve('bin/qwamos-build.js');
const BUILD_TIMEOUT_MS = 30 * 60 * 1000;

interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { maxBuffer: 64 * 1024 * 1024 });
    return { status: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { status: failed.code ?? 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

interface BuildJson {
  steps: { id: string; status: 'run' | 'cached' }[];
  outputs: { name: string; size: number; sha256: string; path: string }[];
}

let workDir: string;
let outDir: string;
let keysDir: string;
let firstBuild: BuildJson;

describe('default host image', () => {
  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), 'qwamos-e2e-'));
    outDir = path.join(workDir, 'out');
    // Keys of this run alone, so that no rollback index another build
    // recorded in the shared dev-key ledger can refuse these builds.
    keysDir = path.join(workDir, 'keys');
    expect((await cli(['keys', 'generate', '--dir', keysDir, '--dev'])).status).toBe(0);
    const result = await cli(['build', '--keys', keysDir, '--out', outDir, '--json']);
    expect(result.stderr + result.stdout).not.toContain('error:');
    expect(result.status).toBe(0);
    firstBuild = JSON.parse(result.stdout) as BuildJson;
  }, BUILD_TIMEOUT_MS);

  it('publishes every artifact with its digest', () => {
    const names = firstBuild.outputs.map((output) => output.name).sort();
    expect(names).toEqual([
      'Image', 'boot.json', 'initramfs.cpio.gz', 'initramfs.manifest', 'kernel.config', 'kernel.manifest',
      'keys/avb_pubkey.bin', 'keys/guest-stage.cert', 'keys/guest-stage.pub', 'keys/root.pub', 'keys/system-stage.cert', 'keys/system-stage.pub',
      'system-manifest.img', 'system.img', 'system.manifest', 'vbmeta.img', 'verity.json',
    ]);
    for (const output of firstBuild.outputs) expect(output.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('has a hash tree that veritysetup verify accepts', async () => {
    const verity = JSON.parse(await readFile(path.join(outDir, 'verity.json'), 'utf8')) as Record<string, string | number>;
    const image = path.join(outDir, 'system.img');
    const { stderr } = await run('veritysetup', [
      'verify', image, image, String(verity.rootDigest),
      '--no-superblock', '--format=1', '--hash=sha256',
      '--data-block-size=4096', '--hash-block-size=4096',
      `--data-blocks=${verity.dataBlocks}`, `--hash-offset=${verity.hashOffset}`, `--salt=${verity.salt}`,
    ]);
    expect(stderr).toBe('');
  });

  it('puts the verity root hash on the kernel command line', async () => {
    const boot = JSON.parse(await readFile(path.join(outDir, 'boot.json'), 'utf8')) as { cmdline: string };
    const verity = JSON.parse(await readFile(path.join(outDir, 'verity.json'), 'utf8')) as { rootDigest: string };
    expect(boot.cmdline).toContain('dm-mod.create="system,,,ro,0 ');
    expect(boot.cmdline).toContain(` verity 1 /dev/vda /dev/vda 4096 4096 `);
    expect(boot.cmdline).toContain(verity.rootDigest);
  });

  it('passes the kernel config rules on the built Image', async () => {
    const result = await cli(['kconfig', 'check', '--device', 'qemu-virt-arm64', '--kernel', path.join(outDir, 'Image'), '--json']);
    expect(result.status).toBe(0);
  });

  it('boots in QEMU to the runtime with /dev/kvm', async () => {
    const result = await cli(['boot-test', outDir, '--timeout', '120', '--json']);
    const report = JSON.parse(result.stdout) as { passed: boolean; markers: { id: string }[]; bootTimeMs: number };

    expect(report.markers.map((marker) => marker.id)).toEqual(['kernel', 'kvm', 'system', 'runtime']);
    expect(report.passed).toBe(true);
    expect(result.status).toBe(0);
    expect(report.bootTimeMs).toBeGreaterThan(0);
  }, 180_000);

  it('reuses every step when nothing changed', async () => {
    const result = await cli(['build', '--keys', keysDir, '--out', outDir, '--json']);
    const second = JSON.parse(result.stdout) as BuildJson;

    expect(second.steps.map((step) => step.status)).toEqual(second.steps.map(() => 'cached'));
    expect(second.outputs).toEqual(firstBuild.outputs);
  }, 120_000);

  it('reruns only the system image when the runtime changes', async () => {
    const recipeDir = path.join(workDir, 'recipes');
    await cp(path.resolve('recipes'), recipeDir, { recursive: true });
    // A value no earlier run used, so the system image cannot come from the cache.
    await writeFile(path.join(recipeDir, 'sample-runtime', 'qwamos', 'etc', 'version'), `0.1.0-${path.basename(workDir)}\n`);

    const result = await cli(['build', '--keys', keysDir, '--recipe', path.join(recipeDir, 'host.yaml'), '--out', path.join(workDir, 'out-changed'), '--json']);
    const changed = JSON.parse(result.stdout) as BuildJson;
    const statusOf = Object.fromEntries(changed.steps.map((step) => [step.id, step.status]));

    expect(statusOf).toEqual({
      'kernel-source': 'cached', kernel: 'cached', busybox: 'cached', verifier: 'cached', initramfs: 'cached', 'system-image': 'run', 'boot-chain': 'run',
    });
  }, 300_000);

  it('fails the boot with a dm-verity error after one data block is corrupted', async () => {
    const tampered = path.join(workDir, 'tampered');
    await cp(outDir, tampered, { recursive: true });

    // Block 0 holds the EROFS superblock, which the mount reads first.
    const handle = await open(path.join(tampered, 'system.img'), 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 1024);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, 1024);
    await handle.close();

    const result = await cli(['boot-test', tampered, '--timeout', '120', '--json']);
    const report = JSON.parse(result.stdout) as { passed: boolean; failure: { kind: string; line: string } };

    expect(result.status).toBe(1);
    expect(report.passed).toBe(false);
    expect(report.failure.kind).toBe('verity-error');
  }, 180_000);

  it('halts in the initramfs when the system manifest signature is corrupted', async () => {
    const tampered = path.join(workDir, 'bad-signature');
    await cp(outDir, tampered, { recursive: true });
    await flipByte(path.join(tampered, 'system-manifest.img'), 4000);

    const result = await cli(['boot-test', tampered, '--timeout', '120', '--json']);
    const report = JSON.parse(result.stdout) as BootReport;

    expect(result.status).toBe(1);
    expect(report.failure.kind).toBe('verification-failed');
    expect(report.failure.line).toBe('qwamos: verification failed: system: bad signature');
    expect(report.markers.map((marker) => marker.id)).toEqual(['kernel', 'kvm']);
  }, 180_000);

  it('refuses to start QEMU when the kernel does not match vbmeta', async () => {
    const tampered = path.join(workDir, 'bad-kernel');
    await cp(outDir, tampered, { recursive: true });
    await flipByte(path.join(tampered, 'Image'), 100_000);

    const result = await cli(['boot-test', tampered, '--timeout', '120', '--json']);
    const report = JSON.parse(result.stdout) as BootReport;

    expect(result.status).toBe(1);
    expect(report.failure.kind).toBe('stage0-verification-failed');
    expect(report.failure.line).toMatch(/^qwamos: verification failed: boot: .*kernel/);
    expect(report.markers).toEqual([]);
  }, 60_000);

  it('refuses to start QEMU when the initramfs does not match vbmeta', async () => {
    const tampered = path.join(workDir, 'bad-initramfs');
    await cp(outDir, tampered, { recursive: true });
    await flipByte(path.join(tampered, 'initramfs.cpio.gz'), 50_000);

    const result = await cli(['boot-test', tampered, '--json']);
    const report = JSON.parse(result.stdout) as BootReport;

    expect(result.status).toBe(1);
    expect(report.failure.kind).toBe('stage0-verification-failed');
    expect(report.failure.line).toMatch(/^qwamos: verification failed: boot: .*initramfs/);
  }, 60_000);

  it('halts on a disallowed system signer', async () => {
    const resigned = path.join(workDir, 'guest-signed');
    await cp(outDir, resigned, { recursive: true });
    const store = await loadKeyStore(keysDir, { passphrase: DEV_PASSPHRASE });
    const guest = await decryptStoredKey(store, getKey(store, 'guest-stage'));
    if (guest.algorithm !== 'ML-DSA-87') throw new Error('the guest-stage key is not an ML-DSA-87 key');

    const manifest = parseManifest(await readFile(path.join(resigned, 'system.manifest')));
    const signed = await signManifest(manifest, localMldsaSigner(guest.secretKey), guest.publicKey);
    const partition = Buffer.alloc(8192);
    signed.copy(partition);
    await writeFile(path.join(resigned, 'system-manifest.img'), partition);

    const result = await cli(['boot-test', resigned, '--json']);
    const report = JSON.parse(result.stdout) as BootReport;

    expect(result.status).toBe(1);
    expect(report.failure.line).toBe('qwamos: verification failed: system: unknown key');
  }, 180_000);

  it('rejects development keys in a release build', async () => {
    const withoutKeys = await cli(['build', '--release', '--out', path.join(workDir, 'release')]);
    expect(withoutKeys.status).toBe(2);
    expect(withoutKeys.stderr).toContain('build --release needs --keys DIR with release keys');

    const withDevKeys = await cli(['build', '--release', '--keys', keysDir, '--out', path.join(workDir, 'release')]);
    expect(withDevKeys.status).not.toBe(0);
    expect(withDevKeys.stderr).toMatch(/dev/);
  }, 60_000);

  it('halts an image with a lower rollback index after a higher one booted', async () => {
    const counters = path.join(workDir, 'counters.img');
    const newer = path.join(workDir, 'index-2');
    const older = path.join(workDir, 'index-1');
    const keys = path.join(workDir, 'rollback-keys');
    expect((await cli(['keys', 'generate', '--dir', keys, '--dev'])).status).toBe(0);
    expect((await cli(['build', '--keys', keys, '--rollback-index', '2', '--out', newer, '--json'])).status).toBe(0);
    expect((await cli(['build', '--keys', keys, '--rollback-index', '1', '--allow-rollback', '--out', older, '--json'])).status).toBe(0);

    const first = await cli(['boot-test', newer, '--counters', counters, '--json']);
    expect(first.status).toBe(0);
    expect((JSON.parse(first.stdout) as BootReport).counters.slice(0, 2)).toEqual(['2', '2']);

    const second = await cli(['boot-test', older, '--counters', counters, '--json']);
    const report = JSON.parse(second.stdout) as BootReport;
    expect(second.status).toBe(1);
    expect(report.failure.kind).toBe('stage0-verification-failed');
    expect(report.failure.line).toMatch(/^qwamos: verification failed: boot: .*rollback index 1 is below the stored value 2 at location 0/);

    // Only the system slot raised: stage 0 passes and the initramfs verifier halts.
    const systemOnly = path.join(workDir, 'counters-system-only.img');
    await writeFile(systemOnly, encodeCounterStoreFile([0n, 2n]));
    const third = await cli(['boot-test', older, '--counters', systemOnly, '--json']);
    const inGuest = JSON.parse(third.stdout) as BootReport;
    expect(third.status).toBe(1);
    expect(inGuest.failure.line).toBe('qwamos: verification failed: system: rollback (index 1 < stored 2)');

    const refused = await cli(['build', '--keys', keys, '--rollback-index', '0', '--out', path.join(workDir, 'refused')]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain('rollback index 0 is below 1, the last index signed');
  }, 600_000);

  it('signs through an external --signer program with the same bytes as local keys', async () => {
    const keys = path.join(workDir, 'signer-keys');
    expect((await cli(['keys', 'generate', '--dir', keys, '--dev'])).status).toBe(0);
    const local = path.join(workDir, 'signed-locally');
    expect((await cli(['build', '--keys', keys, '--out', local, '--quiet'])).status).toBe(0);

    const calls = path.join(workDir, 'signer-calls.log');
    const script = path.join(workDir, 'signer.mjs');
    await writeFile(script, signerScript(keys, calls));
    const external = path.join(workDir, 'signed-externally');
    const result = await cli(['build', '--keys', keys, '--signer', `${process.execPath} ${script}`, '--out', external, '--quiet']);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);

    const logged = (await readFile(calls, 'utf8')).trim().split('\n');
    expect(logged).toHaveLength(3);
    for (const manifest of ['kernel.manifest', 'initramfs.manifest', 'system.manifest']) {
      expect((await readFile(path.join(external, manifest))).equals(await readFile(path.join(local, manifest)))).toBe(true);
    }

    const garbage = path.join(workDir, 'garbage-signer.mjs');
    await writeFile(garbage, 'process.stdout.write("not a signature");\n');
    const refused = await cli(['build', '--keys', keys, '--signer', `${process.execPath} ${garbage}`, '--out', path.join(workDir, 'bad-signer'), '--quiet']);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/signature/);
  }, 1_800_000);
});

/** Returns the source of an external signer that signs with a dev key store and logs each call's arguments. */
function signerScript(keys: string, calls: string): string {
  const module = (name: string): string => JSON.stringify(path.resolve('dist/signing', name));
  return `
import { appendFileSync } from 'node:fs';
const { loadKeyStore } = await import(${module('keys-store.js')});
const { makeSigner } = await import(${module('keys-signer.js')});
const { DEV_PASSPHRASE } = await import(${module('keys-passphrase.js')});
const args = process.argv.slice(2);
const value = (name) => args[args.indexOf(name) + 1];
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
appendFileSync(${JSON.stringify(calls)}, args.join(' ') + '\\n');
const store = await loadKeyStore(${JSON.stringify(keys)}, { passphrase: DEV_PASSPHRASE });
const key = store.keys.find((candidate) => candidate.id === value('--key-id'));
const signature = await makeSigner(store, key.purpose)(Buffer.concat(chunks), Buffer.from(value('--context'), 'hex'));
process.stdout.write(signature);
`;
}

interface BootReport {
  passed: boolean;
  failure: { kind: string; line: string };
  markers: { id: string }[];
  counters: string[];
}

function encodeCounterStoreFile(counters: bigint[]): Buffer {
  const file = Buffer.alloc(COUNTER_STORE_FILE_SIZE);
  encodeCounterStore([...counters, ...new Array<bigint>(32 - counters.length).fill(0n)]).copy(file);
  return file;
}

async function flipByte(file: string, offset: number): Promise<void> {
  const handle = await open(file, 'r+');
  const byte = Buffer.alloc(1);
  await handle.read(byte, 0, 1, offset);
  byte[0] = byte[0]! ^ 0xff;
  await handle.write(byte, 0, 1, offset);
  await handle.close();
}
