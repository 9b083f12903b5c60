import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { avbFailureReason, type AvbFailureReason } from '../../signing/avb-errors.js';
import { encodeAvbPublicKey, findAvbAlgorithm, signAvb, type AvbRsaKey } from '../../signing/avb-key.js';
import { buildVbmeta, parseVbmeta, VBMETA_HEADER_SIZE, type VbmetaOptions } from '../../signing/avb-vbmeta.js';
import { verifyVbmeta, type VerifyVbmetaOptions } from '../../signing/avb-verify.js';
import { captureError, flipByte, testKey } from './avb-fixtures.js';

async function signed(options: VbmetaOptions = {}): Promise<Buffer> {
  return buildVbmeta({ algorithm: 'SHA256_RSA2048', key: await testKey(2048), kernelCmdlines: ['quiet'], ...options });
}

/**
 * Changes header bytes of a SHA256_RSA2048 vbmeta and signs it again, so a
 * test reaches the rule behind the signature check.
 */
function resign(vbmeta: Buffer, key: AvbRsaKey, edit: (header: Buffer, auxiliary: Buffer) => void): Buffer {
  const copy = Buffer.from(vbmeta);
  const parsed = parseVbmeta(copy);
  const header = copy.subarray(0, VBMETA_HEADER_SIZE);
  const auxiliaryStart = VBMETA_HEADER_SIZE + parsed.header.authenticationBlockSize;
  const auxiliary = copy.subarray(auxiliaryStart, auxiliaryStart + parsed.header.auxiliaryBlockSize);
  edit(header, auxiliary);

  const algorithm = findAvbAlgorithm('SHA256_RSA2048');
  const signedData = Buffer.concat([header, auxiliary]);
  createHash('sha256').update(signedData).digest().copy(copy, VBMETA_HEADER_SIZE);
  signAvb(algorithm, key, signedData).copy(copy, VBMETA_HEADER_SIZE + 32);
  return copy;
}

function failure(vbmeta: Uint8Array, options: VerifyVbmetaOptions = {}): { reason: AvbFailureReason | undefined; message: string } {
  const error = captureError(() => verifyVbmeta(vbmeta, options));
  return { reason: avbFailureReason(error), message: error instanceof Error ? error.message : '' };
}

describe('verifyVbmeta accepts', () => {
  it('a signed image and reports its key digest', async () => {
    const key = await testKey(2048);
    const verified = verifyVbmeta(await signed({ rollbackIndex: 7 }), { expectedPublicKey: encodeAvbPublicKey(key) });

    expect(verified.algorithm.name).toBe('SHA256_RSA2048');
    expect(verified.rollbackIndex).toBe(7n);
    expect(verified.publicKeySha256).toBe(createHash('sha256').update(encodeAvbPublicKey(key)).digest('hex'));
  });

  it('a rollback index equal to the stored one', async () => {
    const verified = verifyVbmeta(await signed({ rollbackIndex: 5 }), { rollbackIndexes: new Map([[0, 5n]]) });
    expect(verified.rollbackIndexLocation).toBe(0);
  });
});

describe('verifyVbmeta structure checks', () => {
  it('rejects bad magic', async () => {
    expect(failure(flipByte(await signed(), 0)).reason).toBe('bad_magic');
  });

  it('rejects data shorter than the header', async () => {
    expect(failure((await signed()).subarray(0, 200))).toEqual({ reason: 'truncated', message: 'vbmeta data has 200 bytes, fewer than the 256-byte header' });
  });

  it('rejects data shorter than its blocks', async () => {
    const vbmeta = await signed();
    expect(failure(vbmeta.subarray(0, vbmeta.length - 64)).reason).toBe('truncated');
  });

  it('rejects a newer required libavb version', async () => {
    const vbmeta = await signed();
    vbmeta.writeUInt32BE(4, 8);
    expect(failure(vbmeta)).toEqual({ reason: 'version', message: 'vbmeta requires libavb 1.4; this verifier implements libavb 1.3' });
  });

  it('rejects a release string without NUL', async () => {
    const vbmeta = await signed();
    vbmeta.fill(0x41, 128, 176);
    expect(failure(vbmeta).reason).toBe('release_string');
  });

  it('rejects a block size not a multiple of 64', async () => {
    const vbmeta = await signed();
    vbmeta.writeBigUInt64BE(320n + 8n, 12);
    expect(failure(vbmeta).reason).toBe('block_size');
  });

  it('rejects a hash range outside its block', async () => {
    const vbmeta = await signed();
    vbmeta.writeBigUInt64BE(1n << 62n, 32);
    const result = failure(vbmeta);
    expect(result.reason).toBe('range');
    expect(result.message).toMatch(/vbmeta hash \(offset 4611686018427387904, size 32\) is not entirely inside the 320-byte authentication block/);
  });

  it('rejects a public key range outside its block', async () => {
    const vbmeta = await signed();
    vbmeta.writeBigUInt64BE(100_000n, 72);
    expect(failure(vbmeta).reason).toBe('range');
  });

  it('rejects descriptors outside the auxiliary block', async () => {
    const vbmeta = await signed();
    vbmeta.writeBigUInt64BE(1n << 63n, 104);
    expect(failure(vbmeta).reason).toBe('range');
  });

  it('rejects an unknown algorithm', async () => {
    const vbmeta = resign(await signed(), await testKey(2048), (header) => header.writeUInt32BE(9, 28));
    expect(failure(vbmeta)).toEqual({ reason: 'algorithm', message: 'vbmeta: algorithm type 9 is not one libavb implements (0 to 6)' });
  });

  it('rejects a hash size that does not fit the algorithm', async () => {
    const vbmeta = resign(await signed(), await testKey(2048), (header) => header.writeBigUInt64BE(31n, 40));
    expect(failure(vbmeta).reason).toBe('hash_size');
  });

  it('rejects a signature size that does not fit the algorithm', async () => {
    const vbmeta = resign(await signed(), await testKey(2048), (header) => header.writeBigUInt64BE(255n, 56));
    expect(failure(vbmeta).reason).toBe('signature_size');
  });

  it('rejects a malformed descriptor even when signed', async () => {
    const vbmeta = resign(await signed(), await testKey(2048), (_header, auxiliary) => auxiliary.writeBigUInt64BE(9n, 8));
    expect(failure(vbmeta).reason).toBe('descriptor');
  });
});

describe('verifyVbmeta authentication', () => {
  it('rejects a changed descriptor', async () => {
    const vbmeta = await signed();
    const auxiliaryStart = VBMETA_HEADER_SIZE + parseVbmeta(vbmeta).header.authenticationBlockSize;
    expect(failure(flipByte(vbmeta, auxiliaryStart + 24)).reason).toBe('hash_mismatch');
  });

  it('rejects a changed rollback index', async () => {
    const vbmeta = await signed({ rollbackIndex: 3 });
    vbmeta.writeBigUInt64BE(4n, 112);
    expect(failure(vbmeta).reason).toBe('hash_mismatch');
  });

  it('rejects a changed signature', async () => {
    expect(failure(flipByte(await signed(), VBMETA_HEADER_SIZE + 40)).reason).toBe('signature');
  });

  it('rejects a substituted public key', async () => {
    const vbmeta = await signed();
    const { header } = parseVbmeta(vbmeta);
    const keyStart = VBMETA_HEADER_SIZE + header.authenticationBlockSize + header.publicKeyOffset;
    // A public key with n0inv and rr of its own but a different modulus; the digest is recomputed too.
    const forged = Buffer.from(vbmeta);
    const modulus = BigInt(`0x${forged.subarray(keyStart + 8, keyStart + 264).toString('hex')}`) + 2n;
    replacementKeyBlob(modulus).copy(forged, keyStart);
    const signedData = Buffer.concat([forged.subarray(0, VBMETA_HEADER_SIZE), forged.subarray(VBMETA_HEADER_SIZE + header.authenticationBlockSize)]);
    createHash('sha256').update(signedData).digest().copy(forged, VBMETA_HEADER_SIZE);

    expect(failure(forged).reason).toBe('signature');
  });

  it('rejects a public key with a wrong rr', async () => {
    const vbmeta = resign(await signed(), await testKey(2048), (header, auxiliary) => {
      const keyEnd = Number(header.readBigUInt64BE(64) + header.readBigUInt64BE(72));
      auxiliary[keyEnd - 1] = (auxiliary[keyEnd - 1] as number) ^ 1;
    });
    expect(failure(vbmeta).reason).toBe('public_key');
  });

  it('rejects an unsigned image unless allowed', () => {
    const vbmeta = buildVbmeta({});
    expect(failure(vbmeta).reason).toBe('unsigned');
    expect(verifyVbmeta(vbmeta, { allowUnsigned: true }).algorithm.name).toBe('NONE');
  });

  it('rejects a key other than the expected one', async () => {
    const result = failure(await signed(), { expectedPublicKey: encodeAvbPublicKey(await testKey(4096)) });
    expect(result.reason).toBe('key_mismatch');
    expect(result.message).toMatch(/does not match the expected public key/);
  });
});

describe('verifyVbmeta rollback', () => {
  it('rejects an index below the stored value', async () => {
    const result = failure(await signed({ rollbackIndex: 5 }), { rollbackIndexes: new Map([[0, 6n]]) });
    expect(result).toEqual({
      reason: 'rollback',
      message: 'vbmeta: rollback index 5 is below the stored value 6 at location 0; the image is older than one already booted',
    });
  });

  it('compares against the image location only', async () => {
    const vbmeta = await signed({ rollbackIndex: 5, rollbackIndexLocation: 2 });
    expect(verifyVbmeta(vbmeta, { rollbackIndexes: new Map([[0, 9n]]) }).rollbackIndexLocation).toBe(2);
    expect(failure(vbmeta, { rollbackIndexes: new Map([[2, 9]]) }).reason).toBe('rollback');
  });

  it('rejects location 32 and above', async () => {
    const vbmeta = resign(await signed(), await testKey(2048), (header) => header.writeUInt32BE(32, 124));
    expect(failure(vbmeta).reason).toBe('rollback_location');
  });

  it('uses the chain descriptor location for a chained image', async () => {
    const vbmeta = await signed({ rollbackIndex: 5, rollbackIndexLocation: 0 });
    const result = failure(vbmeta, { chained: { rollbackIndexLocation: 3 }, rollbackIndexes: new Map([[3, 8n]]) });
    expect(result.reason).toBe('rollback');
    expect(result.message).toMatch(/at location 3/);
  });
});

describe('verifyVbmeta chain rules', () => {
  const chain = (partitionName: string, rollbackIndexLocation: number) => ({ kind: 'chain_partition' as const, partitionName, rollbackIndexLocation, publicKey: Buffer.alloc(520, 1), flags: 0 });

  it('rejects a chain descriptor with location 0', async () => {
    const result = failure(await signed({ descriptors: [chain('boot', 0)] }));
    expect(result.reason).toBe('chain_location');
    expect(result.message).toMatch(/chain partition 'boot' has rollback index location 0/);
  });

  it('rejects two chains with one location', async () => {
    const result = failure(await signed({ descriptors: [chain('boot', 2), chain('init_boot', 2)] }));
    expect(result.reason).toBe('chain_location');
    expect(result.message).toMatch(/'init_boot' uses rollback index location 2, which chain partition 'boot' already uses/);
  });

  it('rejects a chain sharing the top-level location', async () => {
    const result = failure(await signed({ rollbackIndexLocation: 1, descriptors: [chain('boot', 1)] }));
    expect(result.reason).toBe('chain_location');
  });

  it('rejects a chain inside a chained image', async () => {
    expect(failure(await signed({ descriptors: [chain('boot', 2)] }), { chained: { rollbackIndexLocation: 1 } }).reason).toBe('chain_nested');
  });

  it('rejects flags in a chained image', async () => {
    expect(failure(await signed({ flags: 1 }), { chained: { rollbackIndexLocation: 1 } }).reason).toBe('chain_flags');
  });

  it('rejects a chained image signed with another key', async () => {
    const result = failure(await signed(), { chained: { rollbackIndexLocation: 1 }, expectedPublicKey: encodeAvbPublicKey(await testKey(4096)) });
    expect(result.reason).toBe('key_mismatch');
    expect(result.message).toMatch(/the key in its chain partition descriptor/);
  });
});

/** Encodes an AVB key blob for an arbitrary odd modulus, n0inv and rr computed as avbtool does. */
function replacementKeyBlob(modulus: bigint): Buffer {
  const word = 1n << 32n;
  let [a, b, x0, x1] = [modulus % word, word, 1n, 0n];
  while (b !== 0n) {
    const q = a / b;
    [a, b] = [b, a - q * b];
    [x0, x1] = [x1, x0 - q * x1];
  }
  const n0inv = word - (((x0 % word) + word) % word);
  const r = 1n << BigInt(modulus.toString(2).length);
  const rr = (r * r) % modulus;
  const header = Buffer.alloc(8);
  header.writeUInt32BE(2048, 0);
  header.writeUInt32BE(Number(n0inv), 4);
  const hex = (value: bigint): Buffer => Buffer.from(value.toString(16).padStart(512, '0'), 'hex');
  return Buffer.concat([header, hex(modulus), hex(rr)]);
}
