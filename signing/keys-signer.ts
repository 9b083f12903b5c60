/**
 * Signers: functions that sign bytes with a key of the store, either with
 * the decrypted private key or through an external program (an HSM client
 * or an offline machine). Every signature is verified against the stored
 * public key before it is returned.
 *
 * External signer protocol: the command line given with --signer is run
 * by /bin/sh with these arguments appended:
 *   --key-id ID          lowercase hex SHA-256 of the key's SubjectPublicKeyInfo DER
 *   --algorithm NAME     ML-DSA-87 (FIPS 204 pure ML-DSA) or SHA256_RSA4096 (RSASSA-PKCS1-v1_5 with SHA-256)
 *   --context HEX        ML-DSA context string in lowercase hex; an empty argument for an empty context
 * The bytes to sign arrive on standard input. The program writes the raw
 * signature to standard output and exits with status 0. Standard error is
 * captured and shown when the program fails, so a program that needs to
 * talk to the operator (a PIN prompt) uses /dev/tty.
 */
import { sign as rsaSign, verify as rsaVerify, createPublicKey } from 'node:crypto';
import { execa } from 'execa';
import { QwamosError } from '../core/errors.js';
import { type DecryptedKey, decryptStoredKey } from './keys-private.js';
import { decodeMlDsa87Spki } from './keys-pkcs8.js';
import { mldsaSign, mldsaVerify } from './mldsa.js';
import { getKey, KEY_PURPOSES, type KeyPurpose, type KeyStore, type StoredKey } from './keys-store.js';

export type SignatureAlgorithm = 'ML-DSA-87' | 'SHA256_RSA4096';

/** Longest ML-DSA context string, in bytes (FIPS 204). */
export const MAX_CONTEXT_LENGTH = 255;

/** Default time an external signer may take: 10 minutes, to leave room for an operator at an HSM. */
export const DEFAULT_SIGNER_TIMEOUT_MS = 600_000;

/** Lines of the external program's standard error shown when it fails. */
const STDERR_TAIL_LINES = 20;

export interface SignerOptions {
  /** Shell command line of an external signer; see the protocol above. */
  externalCommand?: string;
  /** Milliseconds before the external signer is killed. */
  timeoutMs?: number;
  /** Time at which stage-key certificates must be valid; defaults to now. */
  now?: Date;
}

export interface Signer {
  /** Signs `message` with the ML-DSA context string `context` (bytes, or text encoded as UTF-8). */
  (message: Uint8Array, context?: Uint8Array | string): Promise<Uint8Array>;
  keyId: string;
  purpose: KeyPurpose;
  algorithm: SignatureAlgorithm;
  dev: boolean;
}

function contextBytes(context: Uint8Array | string | undefined, algorithm: SignatureAlgorithm): Uint8Array {
  const bytes = typeof context === 'string' ? new TextEncoder().encode(context) : (context ?? new Uint8Array(0));
  if (bytes.length > MAX_CONTEXT_LENGTH) {
    throw new QwamosError('LIMIT_EXCEEDED', `ML-DSA context string is ${bytes.length} bytes; FIPS 204 allows at most ${MAX_CONTEXT_LENGTH}`);
  }
  if (algorithm === 'SHA256_RSA4096' && bytes.length > 0) {
    throw new QwamosError('USAGE', 'the AVB key signs with RSA, which takes no context string; pass an empty context');
  }
  return bytes;
}

function checkCertificateValidity(key: StoredKey, now: Date): void {
  if (!key.certificate) return;
  const seconds = Math.floor(now.getTime() / 1000);
  const { notBefore, notAfter } = key.certificate;
  if (seconds < notBefore || seconds > notAfter) {
    const range = `${new Date(notBefore * 1000).toISOString()} to ${new Date(notAfter * 1000).toISOString()}`;
    throw new QwamosError('INPUT_INVALID', `the certificate of the ${key.purpose} key ${key.id} is valid from ${range}, not at ${now.toISOString()}; create a new key store with 'qwamos-build keys generate'`);
  }
}

function verifySignature(key: StoredKey, algorithm: SignatureAlgorithm, message: Uint8Array, context: Uint8Array, signature: Uint8Array): boolean {
  if (algorithm === 'ML-DSA-87') {
    return mldsaVerify(decodeMlDsa87Spki(key.publicKeySpki), message, signature, context);
  }
  const publicKey = createPublicKey({ key: Buffer.from(key.publicKeySpki), format: 'der', type: 'spki' });
  return rsaVerify('sha256', message, publicKey, signature);
}

/** Signs in this process. ML-DSA signing is deterministic, so rebuilding the same payload with the same key gives the same signature. */
function signLocally(decrypted: DecryptedKey, message: Uint8Array, context: Uint8Array): Uint8Array {
  if (decrypted.algorithm === 'ML-DSA-87') return mldsaSign(decrypted.secretKey, message, context);
  return new Uint8Array(rsaSign('sha256', message, decrypted.privateKey));
}

async function signExternally(command: string, key: StoredKey, algorithm: SignatureAlgorithm, message: Uint8Array, context: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  const args = ['--key-id', key.id, '--algorithm', algorithm, '--context', Buffer.from(context).toString('hex')];
  const result = await execa('sh', ['-c', `${command} "$@"`, 'qwamos-signer', ...args], {
    input: message,
    encoding: 'buffer',
    stripFinalNewline: false,
    reject: false,
    timeout: timeoutMs,
  });

  if (result.failed) {
    const stderr = Buffer.from(result.stderr ?? new Uint8Array(0)).toString('utf8').trimEnd();
    let reason = `exited with status ${result.exitCode ?? result.signal}`;
    if (result.exitCode === 127) reason = 'was not found (exit status 127)';
    if (result.timedOut) reason = `timed out after ${timeoutMs} ms`;
    throw new QwamosError('COMMAND_FAILED', `external signer '${command}' ${reason} while signing with the ${key.purpose} key ${key.id}; check the --signer command`, {
      details: stderr === '' ? [] : stderr.split('\n').slice(-STDERR_TAIL_LINES),
      data: { command, args, exitCode: result.exitCode },
    });
  }
  return new Uint8Array(result.stdout);
}

/**
 * Returns a signer for the key of `purpose`. The private key is decrypted
 * on the first call (asking for the passphrase of release keys then), or
 * never when `options.externalCommand` is given.
 */
export function makeSigner(store: KeyStore, purpose: KeyPurpose, options: SignerOptions = {}): Signer {
  if (!KEY_PURPOSES.includes(purpose)) throw new QwamosError('USAGE', `unknown key purpose '${purpose}'; use one of ${KEY_PURPOSES.join(', ')}`);
  const key = getKey(store, purpose);
  const algorithm: SignatureAlgorithm = key.algorithm === 'ML-DSA-87' ? 'ML-DSA-87' : 'SHA256_RSA4096';
  let decrypted: Promise<DecryptedKey> | undefined;

  const sign = async (message: Uint8Array, context?: Uint8Array | string): Promise<Uint8Array> => {
    const ctx = contextBytes(context, algorithm);
    checkCertificateValidity(key, options.now ?? new Date());

    let signature: Uint8Array;
    if (options.externalCommand !== undefined) {
      signature = await signExternally(options.externalCommand, key, algorithm, message, ctx, options.timeoutMs ?? DEFAULT_SIGNER_TIMEOUT_MS);
    } else {
      decrypted ??= decryptStoredKey(store, key).catch((error: unknown) => {
        decrypted = undefined;
        throw error;
      });
      signature = signLocally(await decrypted, message, ctx);
    }

    if (!verifySignature(key, algorithm, message, ctx, signature)) {
      const source = options.externalCommand !== undefined ? `external signer '${options.externalCommand}'` : 'local signing';
      throw new QwamosError('VERIFY_FAILED', `${source} returned a ${signature.length}-byte ${algorithm} signature that does not verify with the ${purpose} key ${key.id}; the signer used another key, algorithm or context, or its output is damaged`);
    }
    return signature;
  };

  return Object.assign(sign, { keyId: key.id, purpose, algorithm, dev: key.dev });
}
