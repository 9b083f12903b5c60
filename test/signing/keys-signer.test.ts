import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { QwamosError } from '../../core/errors.js';
import { TEST_SCRYPT_ENV } from '../../signing/keys-encrypt.js';
import { generateKeyStore } from '../../signing/keys-generate.js';
import { decodeMlDsa87Spki } from '../../signing/keys-pkcs8.js';
import { decryptStoredKey } from '../../signing/keys-private.js';
import { makeSigner } from '../../signing/keys-signer.js';
import { getKey, type KeyPurpose, type KeyStore, loadKeyStore } from '../../signing/keys-store.js';

const CONTEXT = 'qwamos-test-context';

let scratch: string;
let store: KeyStore;
let signerScript: string;
let secretKeyFile: string;

/** External signer for the tests: `node signer.mjs MODE ARGS_FILE SECRET_KEY_FILE --key-id ... --algorithm ... --context HEX`. */
const SIGNER_SOURCE = (noblePath: string): string => `
import { readFileSync, writeFileSync } from 'node:fs';
import { ml_dsa87 } from ${JSON.stringify(noblePath)};

const [mode, argsFile, secretKeyFile, ...args] = process.argv.slice(2);
writeFileSync(argsFile, JSON.stringify(args));
const message = readFileSync(0);

if (mode === 'fail') {
  process.stderr.write('token not present\\n');
  process.exit(3);
}
const context = mode === 'ignore-context' ? new Uint8Array(0) : Buffer.from(args[args.indexOf('--context') + 1], 'hex');
const signature = ml_dsa87.sign(message, readFileSync(secretKeyFile), { context, extraEntropy: false });
process.stdout.write(mode === 'flip' ? Buffer.from(signature.map((byte, i) => (i === 100 ? byte ^ 1 : byte))) : signature);
`;

beforeAll(async () => {
  process.env[TEST_SCRYPT_ENV] = '14';
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-signer-'));
  store = await generateKeyStore(path.join(scratch, 'keys'), { dev: true });

  const noblePath = path.resolve('node_modules/@noble/post-quantum/ml-dsa.js');
  signerScript = path.join(scratch, 'signer.mjs');
  await writeFile(signerScript, SIGNER_SOURCE(noblePath));

  const decrypted = await decryptStoredKey(store, getKey(store, 'system-stage'));
  if (decrypted.algorithm !== 'ML-DSA-87') throw new Error('system-stage key is not ML-DSA-87');
  secretKeyFile = path.join(scratch, 'system-stage.sk');
  await writeFile(secretKeyFile, decrypted.secretKey, { mode: 0o600 });
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<QwamosError> {
  const result = await promise.then(() => undefined, (error: unknown) => error);
  expect(result).toBeInstanceOf(QwamosError);
  return result as QwamosError;
}

function externalCommand(mode: string, argsFile: string): string {
  return `node ${signerScript} ${mode} ${argsFile} ${secretKeyFile}`;
}

function publicKeyOf(purpose: KeyPurpose): Uint8Array {
  return decodeMlDsa87Spki(getKey(store, purpose).publicKeySpki);
}

describe('local signer', () => {
  it('signs with the stage key', async () => {
    const sign = makeSigner(store, 'system-stage');
    const message = randomBytes(1000);
    const signature = await sign(message, CONTEXT);

    expect(signature.length).toBe(4627);
    expect(ml_dsa87.verify(signature, message, publicKeyOf('system-stage'), { context: new TextEncoder().encode(CONTEXT) })).toBe(true);
    expect(ml_dsa87.verify(signature, message, publicKeyOf('guest-stage'), { context: new TextEncoder().encode(CONTEXT) })).toBe(false);
    expect(sign.keyId).toBe(getKey(store, 'system-stage').id);
    expect(sign.algorithm).toBe('ML-DSA-87');
    expect(sign.dev).toBe(true);
  });

  it('signs deterministically', async () => {
    const sign = makeSigner(store, 'guest-stage');
    const message = randomBytes(64);
    expect(Buffer.from(await sign(message, CONTEXT)).equals(Buffer.from(await sign(message, CONTEXT)))).toBe(true);
  });

  it('AVB signature verifies with openssl', async () => {
    const sign = makeSigner(store, 'avb');
    const message = randomBytes(4096);
    const signature = await sign(message);
    const messageFile = path.join(scratch, 'avb-message.bin');
    const signatureFile = path.join(scratch, 'avb-signature.bin');
    await writeFile(messageFile, message);
    await writeFile(signatureFile, signature);

    expect(signature.length).toBe(512);
    const { stdout } = await runTool('openssl', ['dgst', '-sha256', '-verify', getKey(store, 'avb').publicKeyFile, '-signature', signatureFile, messageFile]);
    expect(stdout).toBe('Verified OK');
  });

  it('rejects a context for the AVB key', async () => {
    const error = await rejection(makeSigner(store, 'avb')(randomBytes(10), 'ctx'));
    expect(error.message).toBe('the AVB key signs with RSA, which takes no context string; pass an empty context');
  });

  it('rejects a context over 255 bytes', async () => {
    const error = await rejection(makeSigner(store, 'system-stage')(randomBytes(10), new Uint8Array(256)));
    expect(error.code).toBe('LIMIT_EXCEEDED');
    expect(error.message).toBe('ML-DSA context string is 256 bytes; FIPS 204 allows at most 255');
  });

  it('rejects an unknown purpose', () => {
    expect(() => makeSigner(store, 'kernel' as KeyPurpose)).toThrow("unknown key purpose 'kernel'; use one of root, system-stage, guest-stage, avb");
  });

  it('rejects an expired certificate', async () => {
    const key = getKey(store, 'system-stage');
    const now = new Date('2200-01-01T00:00:00Z');
    const error = await rejection(makeSigner(store, 'system-stage', { now })(randomBytes(10), CONTEXT));
    const range = `${new Date((key.certificate?.notBefore ?? 0) * 1000).toISOString()} to ${new Date((key.certificate?.notAfter ?? 0) * 1000).toISOString()}`;
    expect(error.message).toBe(`the certificate of the system-stage key ${key.id} is valid from ${range}, not at 2200-01-01T00:00:00.000Z; create a new key store with 'qwamos-build keys generate'`);
  });
});

describe('external signer', () => {
  it('receives the documented arguments', async () => {
    const argsFile = path.join(scratch, 'args-sign.json');
    const sign = makeSigner(store, 'system-stage', { externalCommand: externalCommand('sign', argsFile) });
    const message = randomBytes(500);
    const signature = await sign(message, CONTEXT);

    expect(ml_dsa87.verify(signature, message, publicKeyOf('system-stage'), { context: new TextEncoder().encode(CONTEXT) })).toBe(true);
    expect(JSON.parse(await readFile(argsFile, 'utf8'))).toEqual([
      '--key-id', getKey(store, 'system-stage').id,
      '--algorithm', 'ML-DSA-87',
      '--context', Buffer.from(CONTEXT).toString('hex'),
    ]);
  });

  it('passes an empty context as an empty argument', async () => {
    const argsFile = path.join(scratch, 'args-empty.json');
    await makeSigner(store, 'system-stage', { externalCommand: externalCommand('sign', argsFile) })(randomBytes(10));
    expect(JSON.parse(await readFile(argsFile, 'utf8'))).toEqual(['--key-id', getKey(store, 'system-stage').id, '--algorithm', 'ML-DSA-87', '--context', '']);
  });

  it('rejects garbage output', async () => {
    const command = `sh -c 'cat >/dev/null; head -c 4627 /dev/zero'`;
    const error = await rejection(makeSigner(store, 'system-stage', { externalCommand: command })(randomBytes(10), CONTEXT));
    expect(error.code).toBe('VERIFY_FAILED');
    expect(error.message).toBe(`external signer '${command}' returned a 4627-byte ML-DSA-87 signature that does not verify with the system-stage key ${getKey(store, 'system-stage').id}; the signer used another key, algorithm or context, or its output is damaged`);
  });

  it('rejects a damaged signature', async () => {
    const command = externalCommand('flip', path.join(scratch, 'args-flip.json'));
    const error = await rejection(makeSigner(store, 'system-stage', { externalCommand: command })(randomBytes(10), CONTEXT));
    expect(error.code).toBe('VERIFY_FAILED');
  });

  it('rejects a signature over another context', async () => {
    const command = externalCommand('ignore-context', path.join(scratch, 'args-ctx.json'));
    const error = await rejection(makeSigner(store, 'system-stage', { externalCommand: command })(randomBytes(10), CONTEXT));
    expect(error.code).toBe('VERIFY_FAILED');
  });

  it('rejects a signature by another key', async () => {
    const command = externalCommand('sign', path.join(scratch, 'args-other.json'));
    const error = await rejection(makeSigner(store, 'guest-stage', { externalCommand: command })(randomBytes(10), CONTEXT));
    expect(error.message).toContain(`does not verify with the guest-stage key ${getKey(store, 'guest-stage').id}`);
  });

  it('reports a failing signer', async () => {
    const command = externalCommand('fail', path.join(scratch, 'args-fail.json'));
    const error = await rejection(makeSigner(store, 'system-stage', { externalCommand: command })(randomBytes(10), CONTEXT));
    expect(error.code).toBe('COMMAND_FAILED');
    expect(error.message).toBe(`external signer '${command}' exited with status 3 while signing with the system-stage key ${getKey(store, 'system-stage').id}; check the --signer command`);
    expect(error.details).toEqual(['token not present']);
  });

  it('reports a missing signer program', async () => {
    const error = await rejection(makeSigner(store, 'system-stage', { externalCommand: 'qwamos-no-such-signer' })(randomBytes(10), CONTEXT));
    expect(error.message).toContain("external signer 'qwamos-no-such-signer' was not found (exit status 127)");
  });

  it('reports a signer that times out', async () => {
    const command = "sh -c 'sleep 5'";
    const error = await rejection(makeSigner(store, 'system-stage', { externalCommand: command, timeoutMs: 200 })(randomBytes(10), CONTEXT));
    expect(error.message).toContain(`external signer '${command}' timed out after 200 ms`);
  });

  it('works without a private key file', async () => {
    const dir = path.join(scratch, 'public-only');
    await cp(store.dir, dir, { recursive: true });
    const index = path.join(dir, 'keys.yaml');
    await writeFile(index, (await readFile(index, 'utf8')).replace('    privateKey: dev-system-stage.key.pem\n', ''));
    await rm(path.join(dir, 'dev-system-stage.key.pem'));
    const publicOnly = await loadKeyStore(dir);

    const local = await rejection(makeSigner(publicOnly, 'system-stage')(randomBytes(10), CONTEXT));
    expect(local.code).toBe('INPUT_NOT_FOUND');
    expect(local.message).toBe(`the key store ${dir} has no private key for the system-stage key ${getKey(publicOnly, 'system-stage').id}; sign with --signer COMMAND (an HSM or offline signer) or restore the private key file`);

    const external = makeSigner(publicOnly, 'system-stage', { externalCommand: externalCommand('sign', path.join(scratch, 'args-hsm.json')) });
    expect((await external(randomBytes(10), CONTEXT)).length).toBe(4627);
  });
});
