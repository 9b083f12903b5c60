import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { dmVerityCmdlineDescriptors, encodeDescriptor, parseDescriptors, type AvbDescriptor, type AvbHashtreeDescriptor } from '../../signing/avb-descriptors.js';
import { AVB_ALGORITHMS, encodeAvbPublicKey } from '../../signing/avb-key.js';
import { AVBTOOL_RELEASE_STRING, buildVbmeta, makeVbmetaImage, parseVbmeta, type VbmetaOptions } from '../../signing/avb-vbmeta.js';
import { verifyVbmeta } from '../../signing/avb-verify.js';
import { KNOWN, captureError, keyPath, runProgram, temporaryFolder, testKey } from './avb-fixtures.js';

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

const HASHTREE: AvbHashtreeDescriptor = {
  kind: 'hashtree',
  dmVerityVersion: 1,
  imageSize: 16384,
  treeOffset: 16384,
  treeSize: 4096,
  dataBlockSize: 4096,
  hashBlockSize: 4096,
  fecNumRoots: 0,
  fecOffset: 0,
  fecSize: 0,
  hashAlgorithm: 'sha256',
  partitionName: 'system',
  salt: Buffer.from('00112233', 'hex'),
  rootDigest: Buffer.alloc(32, 0xab),
  flags: 2,
};

const ALL_DESCRIPTORS: AvbDescriptor[] = [
  { kind: 'property', key: 'com.android.build.boot.fingerprint', value: Buffer.from('qwamos/1.0') },
  HASHTREE,
  {
    kind: 'hash',
    imageSize: 12345,
    hashAlgorithm: 'sha512',
    partitionName: 'boot',
    salt: Buffer.alloc(64, 1),
    digest: Buffer.alloc(64, 2),
    flags: 1,
  },
  { kind: 'kernel_cmdline', flags: 1, kernelCmdline: 'androidboot.hardware=qwamos' },
  { kind: 'chain_partition', rollbackIndexLocation: 3, partitionName: 'vbmeta_system', publicKey: Buffer.alloc(520, 7), flags: 1 },
  { kind: 'unknown', tag: 99n, data: Buffer.alloc(16, 9) },
];

describe('buildVbmeta known answer', () => {
  it('matches avbtool for SHA256_RSA2048 with no descriptors', async () => {
    const vbmeta = buildVbmeta({ algorithm: 'SHA256_RSA2048', key: await testKey(2048), releaseString: '' });

    expect(vbmeta.length).toBe(KNOWN.vbmetaSize);
    expect(sha256(vbmeta)).toBe(KNOWN.vbmetaSha256);
  });

  it('writes the default avbtool release string', async () => {
    const vbmeta = buildVbmeta({ algorithm: 'SHA256_RSA2048', key: await testKey(2048) });

    expect(parseVbmeta(vbmeta).header.releaseString).toBe(AVBTOOL_RELEASE_STRING);
    expect(sha256(vbmeta)).not.toBe(KNOWN.vbmetaSha256);
  });
});

describe('buildVbmeta algorithms', () => {
  for (const algorithm of AVB_ALGORITHMS) {
    it(`signs and verifies ${algorithm.name}`, async () => {
      const key = algorithm.keyBits ? await testKey(algorithm.keyBits as 2048 | 4096 | 8192) : undefined;
      const vbmeta = buildVbmeta({ algorithm: algorithm.name, key, kernelCmdlines: ['console=ttyAMA0'] });
      const parsed = parseVbmeta(vbmeta);

      expect(parsed.header.algorithmType).toBe(algorithm.type);
      expect(parsed.header.authenticationBlockSize % 64).toBe(0);
      expect(parsed.header.auxiliaryBlockSize % 64).toBe(0);
      expect(parsed.hash.length).toBe(algorithm.hashBytes);
      expect(parsed.signature.length).toBe(algorithm.signatureBytes);
      expect(parsed.publicKey.length).toBe(algorithm.publicKeyBytes);

      const verified = verifyVbmeta(vbmeta, { allowUnsigned: true, expectedPublicKey: key ? encodeAvbPublicKey(key) : undefined });
      expect(verified.algorithm.name).toBe(algorithm.name);
    });
  }

  it('makes signatures openssl verifies', async () => {
    const folder = await temporaryFolder();
    for (const algorithm of AVB_ALGORITHMS.filter((candidate) => candidate.hashName)) {
      const bits = algorithm.keyBits as 2048 | 4096 | 8192;
      const parsed = parseVbmeta(buildVbmeta({ algorithm: algorithm.name, key: await testKey(bits), properties: [{ key: 'a', value: 'b' }] }));
      const data = path.join(folder, `${algorithm.name}.data`);
      const signature = path.join(folder, `${algorithm.name}.sig`);
      await writeFile(data, parsed.signedData);
      await writeFile(signature, parsed.signature);

      const result = await runProgram('openssl', ['dgst', `-${algorithm.hashName}`, '-prverify', keyPath(bits), '-signature', signature, data]);
      expect(result.stdout.trim(), algorithm.name).toBe('Verified OK');
      expect(createHash(algorithm.hashName as string).update(parsed.signedData).digest().equals(parsed.hash)).toBe(true);
    }
  });

  it('rejects a key of the wrong size', async () => {
    const key = await testKey(2048);
    expect(() => buildVbmeta({ algorithm: 'SHA256_RSA4096', key })).toThrow(/the key is a 2048-bit RSA key but SHA256_RSA4096 needs 4096 bits/);
  });

  it('rejects a signed algorithm without key', () => {
    expect(() => buildVbmeta({ algorithm: 'SHA512_RSA4096' })).toThrow(/algorithm SHA512_RSA4096 needs a signing key; pass --key KEY.pem/);
  });
});

describe('buildVbmeta header fields', () => {
  it('stores rollback index, location, flags and release string', async () => {
    const vbmeta = buildVbmeta({
      algorithm: 'SHA256_RSA2048',
      key: await testKey(2048),
      rollbackIndex: 1_700_000_000_123n,
      rollbackIndexLocation: 5,
      flags: 3,
      releaseString: 'qwamos',
      appendToReleaseString: 'build 7',
    });
    const { header } = parseVbmeta(vbmeta);

    expect(header.rollbackIndex).toBe(1_700_000_000_123n);
    expect(header.rollbackIndexLocation).toBe(5);
    expect(header.flags).toBe(3);
    expect(header.releaseString).toBe('qwamos build 7');
    expect(header.requiredLibavbVersionMajor).toBe(1);
    expect(header.requiredLibavbVersionMinor).toBe(2);
  });

  it('requires libavb 1.0 at location 0 and 1.3 for a chain without A/B', async () => {
    const chain = { partitionName: 'boot', rollbackIndexLocation: 2, publicKey: encodeAvbPublicKey(await testKey(2048)), doNotUseAb: true };

    expect(parseVbmeta(buildVbmeta({})).header.requiredLibavbVersionMinor).toBe(0);
    expect(parseVbmeta(buildVbmeta({ chainPartitions: [chain] })).header.requiredLibavbVersionMinor).toBe(3);
  });

  it('accepts the largest rollback index', () => {
    const vbmeta = buildVbmeta({ rollbackIndex: (1n << 64n) - 1n });
    expect(parseVbmeta(vbmeta).header.rollbackIndex).toBe((1n << 64n) - 1n);
  });

  it('rejects a negative rollback index', () => {
    expect(() => buildVbmeta({ rollbackIndex: -1 })).toThrow(/rollback index -1 is out of range; it is an unsigned 64-bit number/);
  });

  it('rejects rollback index location 32', () => {
    expect(() => buildVbmeta({ rollbackIndexLocation: 32 })).toThrow(/rollback index location 32 is out of range; libavb has locations 0 to 31/);
  });

  it('rejects a release string over 47 bytes', () => {
    expect(() => buildVbmeta({ releaseString: 'x'.repeat(48) })).toThrow(/is 48 bytes; the header field fits at most 47 bytes/);
  });

  it('rejects flags above 32 bits', () => {
    expect(() => buildVbmeta({ flags: 2 ** 32 })).toThrow(/flags 4294967296 is out of range/);
  });

  it('rejects a vbmeta over 64 KiB', () => {
    const error = captureError(() => buildVbmeta({ properties: [{ key: 'big', value: Buffer.alloc(70_000) }] }));
    expect((error as QwamosError).code).toBe('LIMIT_EXCEEDED');
    expect((error as Error).message).toMatch(/libavb reads at most 65536/);
  });
});

describe('chain partitions at build time', () => {
  const publicKey = Buffer.alloc(520, 1);

  it('rejects location 0', () => {
    expect(() => buildVbmeta({ chainPartitions: [{ partitionName: 'boot', rollbackIndexLocation: 0, publicKey }] }))
      .toThrow(/chain partition 'boot' has rollback index location 0; chained partitions need location 1 or larger/);
  });

  it('rejects a duplicate location', () => {
    const chains = [
      { partitionName: 'boot', rollbackIndexLocation: 1, publicKey },
      { partitionName: 'vbmeta_system', rollbackIndexLocation: 1, publicKey },
    ];
    expect(() => buildVbmeta({ chainPartitions: chains }))
      .toThrow(/rollback index location 1 of chain partition 'vbmeta_system' is already used by chain partition 'boot'/);
  });

  it('rejects the top-level location', () => {
    expect(() => buildVbmeta({ rollbackIndexLocation: 4, chainPartitions: [{ partitionName: 'boot', rollbackIndexLocation: 4, publicKey }] }))
      .toThrow(/already used by this vbmeta image/);
  });
});

describe('descriptors', () => {
  it('round-trip every kind through encode and parse', () => {
    const block = Buffer.concat(ALL_DESCRIPTORS.map(encodeDescriptor));
    const parsed = parseDescriptors(block);

    expect(parsed).toEqual(ALL_DESCRIPTORS.map((descriptor) => normalize(descriptor)));
    expect(Buffer.concat(parsed.map(encodeDescriptor)).equals(block)).toBe(true);
  });

  it('pad each descriptor to a multiple of 8', () => {
    for (const descriptor of ALL_DESCRIPTORS) {
      const encoded = encodeDescriptor(descriptor);
      expect(encoded.length % 8).toBe(0);
      expect(Number(encoded.readBigUInt64BE(8))).toBe(encoded.length - 16);
    }
  });

  it('round-trip through a signed vbmeta', async () => {
    const vbmeta = buildVbmeta({ algorithm: 'SHA256_RSA4096', key: await testKey(4096), descriptors: ALL_DESCRIPTORS });
    expect(parseVbmeta(vbmeta).descriptors).toEqual(ALL_DESCRIPTORS.map(normalize));
  });

  it('encode a property as key NUL value NUL', () => {
    const encoded = encodeDescriptor({ kind: 'property', key: 'k', value: Buffer.from('vv') });
    expect(encoded.toString('hex')).toBe(
      '0000000000000000' + '0000000000000018' + '0000000000000001' + '0000000000000002' + '6b00767600' + '000000',
    );
  });

  it('reject a size that is not a multiple of 8', () => {
    const encoded = encodeDescriptor({ kind: 'kernel_cmdline', flags: 0, kernelCmdline: 'quiet' });
    encoded.writeBigUInt64BE(BigInt(encoded.length - 16 - 1), 8);
    expect(() => parseDescriptors(encoded)).toThrow(/num_bytes_following 15 is not a multiple of 8/);
  });

  it('reject a payload longer than the descriptor', () => {
    const encoded = encodeDescriptor({ kind: 'kernel_cmdline', flags: 0, kernelCmdline: 'quiet' });
    encoded.writeUInt32BE(100, 20);
    expect(() => parseDescriptors(encoded)).toThrow(/kernel cmdline descriptor payload needs 124 bytes but the descriptor has 32/);
  });

  it('reject a descriptor running past the block', () => {
    const encoded = encodeDescriptor({ kind: 'kernel_cmdline', flags: 0, kernelCmdline: 'quiet' });
    expect(() => parseDescriptors(encoded.subarray(0, 24))).toThrow(/runs past the end of the descriptors block/);
  });

  it('reject a partition name that is not UTF-8', () => {
    const encoded = encodeDescriptor({ ...(ALL_DESCRIPTORS[2] as AvbDescriptor & { kind: 'hash' }), partitionName: 'ab' });
    encoded[132] = 0xff;
    expect(() => parseDescriptors(encoded)).toThrow(/partition name is not valid UTF-8/);
  });

  it('reject a hash algorithm name that does not fit', () => {
    expect(() => encodeDescriptor({ ...HASHTREE, hashAlgorithm: 'x'.repeat(32) })).toThrow(/does not fit the descriptor's 32-byte field/);
  });
});

describe('descriptor order', () => {
  it('follows avbtool: given, chains, properties, dm-verity, cmdlines, includes', async () => {
    const included = parseVbmeta(buildVbmeta({
      descriptors: [
        { kind: 'hash', imageSize: 1, hashAlgorithm: 'sha256', partitionName: 'vendor_boot', salt: Buffer.alloc(0), digest: Buffer.alloc(32), flags: 0 },
        { kind: 'hash', imageSize: 2, hashAlgorithm: 'sha256', partitionName: 'boot', salt: Buffer.alloc(0), digest: Buffer.alloc(32), flags: 0 },
        { kind: 'property', key: 'from', value: Buffer.from('included') },
        HASHTREE,
      ],
      rollbackIndexLocation: 1,
    }));
    const options: VbmetaOptions = {
      descriptors: [{ kind: 'kernel_cmdline', flags: 0, kernelCmdline: 'first' }],
      chainPartitions: [{ partitionName: 'init_boot', rollbackIndexLocation: 2, publicKey: Buffer.alloc(520, 3) }],
      properties: [{ key: 'p', value: 'v' }],
      rootfsHashtrees: [HASHTREE],
      kernelCmdlines: ['last'],
      includeDescriptorsFrom: [included],
    };
    const descriptors = parseVbmeta(buildVbmeta(options)).descriptors;

    const summary = descriptors.map((descriptor) => {
      if (descriptor.kind === 'kernel_cmdline') return `cmdline:${descriptor.kernelCmdline.slice(0, 8)}`;
      if (descriptor.kind === 'property') return `prop:${descriptor.key}`;
      if ('partitionName' in descriptor) return `${descriptor.kind}:${descriptor.partitionName}`;
      return descriptor.kind;
    });
    expect(summary).toEqual([
      'cmdline:first',
      'chain_partition:init_boot',
      'prop:p',
      'cmdline:dm="1 vr',
      'cmdline:root=PAR',
      'cmdline:last',
      'prop:from',
      'hash:boot',
      'hash:vendor_boot',
      'hashtree:system',
    ]);
    expect(parseVbmeta(buildVbmeta(options)).header.requiredLibavbVersionMinor).toBe(2);
  });

  it('keeps the last included descriptor per partition', () => {
    const first = parseVbmeta(buildVbmeta({ descriptors: [{ ...HASHTREE, treeSize: 1 }] }));
    const second = parseVbmeta(buildVbmeta({ descriptors: [{ ...HASHTREE, treeSize: 2 }] }));
    const descriptors = parseVbmeta(buildVbmeta({ includeDescriptorsFrom: [first, second] })).descriptors;

    expect(descriptors).toHaveLength(1);
    expect((descriptors[0] as AvbHashtreeDescriptor).treeSize).toBe(2);
  });
});

describe('dmVerityCmdlineDescriptors', () => {
  it('writes the dm= table avbtool writes', () => {
    const [enabled, disabled] = dmVerityCmdlineDescriptors(HASHTREE);

    expect(enabled.kernelCmdline).toBe(
      'dm="1 vroot none ro 1,0 32 verity 1 PARTUUID=$(ANDROID_SYSTEM_PARTUUID) PARTUUID=$(ANDROID_SYSTEM_PARTUUID) '
      + `4096 4096 4 4 sha256 ${'ab'.repeat(32)} 00112233 3 check_at_most_once $(ANDROID_VERITY_MODE) ignore_zero_blocks" root=/dev/dm-0`,
    );
    expect(enabled.flags).toBe(1);
    expect(disabled).toEqual({ kind: 'kernel_cmdline', flags: 2, kernelCmdline: 'root=PARTUUID=$(ANDROID_SYSTEM_PARTUUID)' });
  });
});

describe('makeVbmetaImage', () => {
  it('writes the known answer and pads to --padding_size', async () => {
    const folder = await temporaryFolder();
    const output = path.join(folder, 'vbmeta.img');
    await makeVbmetaImage({ output, algorithm: 'SHA256_RSA2048', key: await testKey(2048), releaseString: '', paddingSize: 4096 });

    const written = await readFile(output);
    expect(written.length).toBe(4096);
    expect(sha256(written.subarray(0, KNOWN.vbmetaSize))).toBe(KNOWN.vbmetaSha256);
    expect(written.subarray(KNOWN.vbmetaSize).every((byte) => byte === 0)).toBe(true);
  });
});

/** Parsed descriptors carry Buffers; compare them with the inputs as Buffers too. */
function normalize(descriptor: AvbDescriptor): AvbDescriptor {
  const copy: Record<string, unknown> = { ...descriptor };
  for (const [key, value] of Object.entries(copy)) {
    if (value instanceof Uint8Array) copy[key] = Buffer.from(value);
  }
  return copy as unknown as AvbDescriptor;
}
