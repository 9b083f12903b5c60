import { createHash } from 'node:crypto';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { avbFailureReason } from '../../signing/avb-errors.js';
import { FOOTER_SIZE, encodeFooter, parseFooter, readFooter, readImageVbmeta } from '../../signing/avb-footer.js';
import { addHashFooter, maxImageSizeForHashFooter, type AddHashFooterOptions } from '../../signing/avb-hash-footer.js';
import { encodeAvbPublicKey } from '../../signing/avb-key.js';
import { parseVbmeta, VBMETA_HEADER_SIZE } from '../../signing/avb-vbmeta.js';
import { verifyImage } from '../../signing/avb-verify-image.js';
import { AVB_VECTORS, captureRejection, temporaryFolder, testKey } from './avb-fixtures.js';

const MIB = 1024 * 1024;

/** Writes `size` bytes of deterministic, non-repeating content. */
async function makeImage(folder: string, name: string, size: number, seed = 'boot'): Promise<string> {
  const blocks: Buffer[] = [];
  for (let i = 0; i * 32 < size; i++) blocks.push(createHash('sha256').update(`${seed}:${i}`).digest());
  const imagePath = path.join(folder, name);
  await writeFile(imagePath, Buffer.concat(blocks).subarray(0, size));
  return imagePath;
}

async function signedOptions(overrides: Partial<AddHashFooterOptions> = {}): Promise<AddHashFooterOptions> {
  return { partitionName: 'boot', partitionSize: MIB, algorithm: 'SHA256_RSA4096', key: await testKey(4096), rollbackIndex: 2, ...overrides };
}

async function readBytes(filePath: string, offset: number, length: number): Promise<Buffer> {
  return (await readFile(filePath)).subarray(offset, offset + length);
}

describe('addHashFooter layout', () => {
  it('writes data, padding, vbmeta and footer where avbtool puts them', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 100_000);
    const original = await readFile(image);

    const result = await addHashFooter(image, await signedOptions());
    const written = await readFile(image);

    expect(written.length).toBe(MIB);
    expect(written.subarray(0, 100_000).equals(original)).toBe(true);
    expect(written.subarray(100_000, 102_400).every((byte) => byte === 0)).toBe(true);
    expect(written.subarray(102_400, 102_400 + result.vbmeta.length).equals(result.vbmeta)).toBe(true);
    expect(written.subarray(102_400 + result.vbmeta.length, MIB - FOOTER_SIZE).every((byte) => byte === 0)).toBe(true);

    const footer = parseFooter(written.subarray(MIB - FOOTER_SIZE));
    expect(footer).toEqual({ versionMajor: 1, versionMinor: 0, originalImageSize: 100_000, vbmetaOffset: 102_400, vbmetaSize: result.vbmeta.length });
    expect(await readFooter(image)).toEqual(footer);
    expect(encodeFooter(footer!).equals(written.subarray(MIB - FOOTER_SIZE))).toBe(true);
  });

  it('stores the digest of salt and image', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 50_000);
    const data = await readFile(image);

    const { descriptor } = await addHashFooter(image, await signedOptions({ hashAlgorithm: 'sha512' }));

    expect(descriptor.imageSize).toBe(50_000);
    expect(descriptor.salt.length).toBe(64);
    expect(Buffer.from(descriptor.digest).equals(createHash('sha512').update(descriptor.salt).update(data).digest())).toBe(true);
    const parsed = (await readImageVbmeta(image)).vbmeta;
    expect(parsed.descriptors).toEqual([descriptor]);
    expect(parsed.header.rollbackIndex).toBe(2n);
  });

  it('verifies with the signing key', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 4096);
    await addHashFooter(image, await signedOptions());

    const lines: string[] = [];
    const report = await verifyImage(image, { expectedPublicKey: encodeAvbPublicKey(await testKey(4096)), onMessage: (line) => lines.push(line) });
    expect(report.descriptors).toEqual([{ kind: 'hash', partitionName: 'boot', image, result: 'verified' }]);
    expect(lines).toEqual([
      `vbmeta: Successfully verified footer and SHA256_RSA4096 vbmeta struct in ${image}`,
      `boot: Successfully verified sha256 hash of ${image} for image of 4096 bytes`,
    ]);
  });
});

describe('addHashFooter salt', () => {
  it('derives the same salt for the same input, so output is reproducible', async () => {
    const folder = await temporaryFolder();
    const first = await makeImage(folder, 'a.img', 30_000);
    const second = path.join(folder, 'b.img');
    await copyFile(first, second);

    await addHashFooter(first, await signedOptions());
    await addHashFooter(second, await signedOptions());
    expect((await readFile(first)).equals(await readFile(second))).toBe(true);
  });

  it('derives a different salt for another partition name', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 30_000);
    const a = await addHashFooter(image, await signedOptions({ partitionName: 'boot', doNotAppendVbmetaImage: true }));
    const b = await addHashFooter(image, await signedOptions({ partitionName: 'init_boot', doNotAppendVbmetaImage: true }));

    expect(a.descriptor.salt.length).toBe(32);
    expect(Buffer.from(a.descriptor.salt).equals(b.descriptor.salt)).toBe(false);
  });

  it('uses a given salt, and none when it is empty', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 30_000);
    const given = await addHashFooter(image, await signedOptions({ salt: Buffer.from('c0ffee', 'hex'), doNotAppendVbmetaImage: true }));
    const empty = await addHashFooter(image, await signedOptions({ salt: Buffer.alloc(0), doNotAppendVbmetaImage: true }));

    expect(Buffer.from(given.descriptor.salt).toString('hex')).toBe('c0ffee');
    expect(empty.descriptor.salt.length).toBe(0);
    expect(Buffer.from(empty.descriptor.digest).equals(createHash('sha256').update(await readFile(image)).digest())).toBe(true);
  });
});

describe('addHashFooter partition sizes', () => {
  it('replaces an existing footer instead of hashing it', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 10_000);
    await addHashFooter(image, await signedOptions());
    const once = await readFile(image);

    await addHashFooter(image, await signedOptions());
    expect((await readFile(image)).equals(once)).toBe(true);
  });

  it('rejects a partition below 69632 bytes', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 1000);
    const error = await captureRejection(async () => addHashFooter(image, await signedOptions({ partitionSize: 65_536 })));

    expect((error as QwamosError).code).toBe('LIMIT_EXCEEDED');
    expect((error as Error).message).toBe("partition 'boot' size 65536 bytes is too small; a hash footer needs at least 69632 bytes (64 KiB vbmeta + 4 KiB footer block)");
  });

  it('rejects an image too large for the partition, naming size and limit', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 100_000);
    const before = await readFile(image);
    const error = await captureRejection(async () => addHashFooter(image, await signedOptions({ partitionSize: 131_072 })));

    expect((error as QwamosError).code).toBe('LIMIT_EXCEEDED');
    expect((error as Error).message).toMatch(/^image of 100000 bytes does not fit partition 'boot' of 131072 bytes: after 69632 bytes for vbmeta and footer the limit is 61440 bytes/);
    expect((await readFile(image)).equals(before)).toBe(true);
  });

  it('rejects a partition size not a multiple of 4096', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 1000);
    await expect(addHashFooter(image, await signedOptions({ partitionSize: 70_000 }))).rejects.toThrow(/partition 'boot' size 70000 bytes is not a multiple of the 4096-byte block size/);
  });

  it('requires a partition size', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 1000);
    await expect(addHashFooter(image, await signedOptions({ partitionSize: undefined }))).rejects.toThrow(/needs --partition_size or --dynamic_partition_size/);
  });

  it('sizes a dynamic partition as avbtool does', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 10_000);
    const result = await addHashFooter(image, await signedOptions({ partitionSize: undefined, dynamicPartitionSize: true }));

    expect(result.partitionSize).toBe(81_920);
    expect((await readFile(image)).length).toBe(81_920);
  });

  it('computes the maximum image size', () => {
    expect(maxImageSizeForHashFooter(64 * MIB)).toBe(64 * MIB - 69_632);
  });

  it('rejects an Android sparse image', async () => {
    const folder = await temporaryFolder();
    const image = path.join(folder, 'sparse.img');
    await copyFile(path.join(AVB_VECTORS, 'test_file.bin.sparse'), image);
    await expect(addHashFooter(image, await signedOptions())).rejects.toThrow(/is an Android sparse image; convert it to a raw image first \(simg2img/);
  });
});

describe('addHashFooter outputs', () => {
  it('writes only the vbmeta with doNotAppendVbmetaImage', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 5000);
    const before = await readFile(image);
    const vbmetaPath = path.join(folder, 'boot.vbmeta');

    const result = await addHashFooter(image, await signedOptions({ doNotAppendVbmetaImage: true, outputVbmetaImage: vbmetaPath }));
    expect(result.footer).toBeUndefined();
    expect((await readFile(image)).equals(before)).toBe(true);
    expect((await readFile(vbmetaPath)).equals(result.vbmeta)).toBe(true);
  });

  it('writes to another file with output', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 5000);
    const before = await readFile(image);
    const output = path.join(folder, 'out', 'boot.img');

    await addHashFooter(image, await signedOptions({ output }));
    expect((await readFile(image)).equals(before)).toBe(true);
    expect((await readFooter(output))?.originalImageSize).toBe(5000);
  });

  it('leaves the digest out for a persistent digest', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 5000);
    const result = await addHashFooter(image, await signedOptions({ usePersistentDigest: true, doNotUseAb: true }));

    expect(result.descriptor.digest.length).toBe(0);
    expect(result.descriptor.salt.length).toBe(0);
    expect(result.descriptor.flags).toBe(1);
    expect(parseVbmeta(result.vbmeta).header.requiredLibavbVersionMinor).toBe(1);
  });
});

describe('verifyImage on hash footers', () => {
  async function footedImage(): Promise<{ image: string; vbmetaOffset: number }> {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 20_000);
    const result = await addHashFooter(image, await signedOptions());
    return { image, vbmetaOffset: result.footer!.vbmetaOffset };
  }

  async function patch(filePath: string, offset: number, edit: (bytes: Buffer) => void, length: number): Promise<void> {
    const all = await readFile(filePath);
    edit(all.subarray(offset, offset + length));
    await writeFile(filePath, all);
  }

  it('rejects a descriptor image size changed without re-signing', async () => {
    const { image, vbmetaOffset } = await footedImage();
    const vbmeta = parseVbmeta(await readBytes(image, vbmetaOffset, 65_536));
    const descriptorStart = vbmetaOffset + VBMETA_HEADER_SIZE + vbmeta.header.authenticationBlockSize + vbmeta.header.descriptorsOffset;
    await patch(image, descriptorStart + 16, (field) => field.writeBigUInt64BE(19_999n), 8);

    const error = await captureRejection(() => verifyImage(image));
    expect(avbFailureReason(error)).toBe('hash_mismatch');
  });

  it('rejects a footer whose original size disagrees with the descriptor', async () => {
    const { image } = await footedImage();
    await patch(image, MIB - FOOTER_SIZE + 12, (field) => field.writeBigUInt64BE(19_000n), 8);

    const error = await captureRejection(() => verifyImage(image));
    expect(avbFailureReason(error)).toBe('footer');
    expect((error as Error).message).toMatch(/records an original image size of 19000 bytes but the hash descriptor of 'boot' covers 20000 bytes/);
  });

  it('rejects changed partition data', async () => {
    const { image } = await footedImage();
    await patch(image, 12_345, (byte) => { byte[0] = (byte[0] as number) ^ 0x80; }, 1);

    const error = await captureRejection(() => verifyImage(image));
    expect(avbFailureReason(error)).toBe('image_digest');
    expect((error as Error).message).toMatch(/sha256 digest of .*boot\.img does not match the hash descriptor of 'boot'/);
  });

  it('rejects a footer pointing past the end', async () => {
    const { image } = await footedImage();
    await patch(image, MIB - FOOTER_SIZE + 20, (field) => field.writeBigUInt64BE(BigInt(MIB)), 8);

    const error = await captureRejection(() => verifyImage(image));
    expect(avbFailureReason(error)).toBe('footer');
  });

  it('rejects a footer with vbmeta over 64 KiB', async () => {
    const { image } = await footedImage();
    await patch(image, MIB - FOOTER_SIZE + 28, (field) => field.writeBigUInt64BE(65_537n), 8);

    await expect(verifyImage(image)).rejects.toThrow(/vbmeta size 65537 exceeds libavb's maximum of 65536 bytes/);
  });

  it('rejects a footer of major version 2', async () => {
    const { image } = await footedImage();
    await patch(image, MIB - FOOTER_SIZE + 4, (field) => field.writeUInt32BE(2), 4);

    await expect(verifyImage(image)).rejects.toThrow(/footer version 2\.0 is not supported/);
  });
});
