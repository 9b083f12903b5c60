/**
 * Sparse images against libsparse's img2simg and simg2img (29.0.6): our
 * writer gives img2simg's bytes, each tool reads the other's files, split
 * images reassemble with `simg2img PART... RAW`, and damaged files are
 * rejected with the fault named.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runTool } from '../../core/exec.js';
import { sparsePackCommand, sparseUnpackCommand } from '../../cli/commands/sparse.js';
import { QwamosError } from '../../core/errors.js';
import { expandSparseImage, readSparseImage, unsparseImages } from '../../images/sparse-read.js';
import { writeSparseImage } from '../../images/sparse-write.js';


let dir: string;
let raw: Buffer;
let rawPath: string;

/** Returns `size` bytes that repeat one little-endian 4-byte word. */
function fill(word: number, size: number): Buffer {
  const pattern = Buffer.alloc(4);
  pattern.writeUInt32LE(word);
  return Buffer.alloc(size, pattern);
}

/** Zero-pads `data` to whole blocks, as simg2img writes a partial last block. */
function padToBlocks(data: Buffer, blockSize: number): Buffer {
  return Buffer.concat([data, Buffer.alloc((blockSize - (data.length % blockSize)) % blockSize)]);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sparse-'));
  const almostFill = fill(0x11111111, 4096);
  almostFill[2000] = 0x12;
  raw = Buffer.concat([
    randomBytes(3 * 4096),
    Buffer.alloc(5 * 4096), // zero blocks: FILL 0, as img2simg writes them
    fill(0xabcdef01, 2 * 4096),
    fill(0x01020304, 4096), // a different word: its own FILL chunk
    almostFill, // first and last words match, one byte differs: RAW
    randomBytes(40 * 4096),
    Buffer.alloc(60 * 4096),
    randomBytes(20 * 4096),
    randomBytes(100), // partial last block
  ]);
  rawPath = path.join(dir, 'raw.img');
  await writeFile(rawPath, raw);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('sparse writer against img2simg', () => {
  it.each([4096, 1024, 8192])('block size %i gives img2simg bytes', async (blockSize) => {
    const theirs = path.join(dir, `theirs-${blockSize}.simg`);
    const ours = path.join(dir, `ours-${blockSize}.simg`);
    await runTool('img2simg', [rawPath, theirs, String(blockSize)]);
    const written = await writeSparseImage(rawPath, ours, { blockSize });

    expect(written).toEqual([ours]);
    expect((await readFile(ours)).equals(await readFile(theirs))).toBe(true);
  });

  it('empty raw image gives img2simg bytes', async () => {
    const empty = path.join(dir, 'empty.raw');
    await writeFile(empty, '');
    await runTool('img2simg', [empty, path.join(dir, 'empty-theirs.simg')]);
    await writeSparseImage(empty, path.join(dir, 'empty-ours.simg'));
    expect((await readFile(path.join(dir, 'empty-ours.simg'))).equals(await readFile(path.join(dir, 'empty-theirs.simg')))).toBe(true);
  });

  it('simg2img expands our file to the raw image', async () => {
    const ours = path.join(dir, 'ours-4096.simg');
    const expanded = path.join(dir, 'ours-expanded.raw');
    await runTool('simg2img', [ours, expanded]);
    expect((await readFile(expanded)).equals(padToBlocks(raw, 4096))).toBe(true);
  });

  it('plans RAW and FILL chunks as img2simg does', async () => {
    const info = await readSparseImage(path.join(dir, 'ours-4096.simg'));
    expect(info.chunks.map((chunk) => [chunk.kind, chunk.blocks])).toEqual([
      ['raw', 3], ['fill', 5], ['fill', 2], ['fill', 1], ['raw', 41], ['fill', 60], ['raw', 21],
    ]);
    expect(info.chunks[2]!.pattern!.readUInt32LE(0)).toBe(0xabcdef01);
  });
});

describe('sparse reader', () => {
  it('expands the AOSP test vector with RAW, DONT_CARE and FILL chunks', async () => {
    const vectors = path.resolve(process.cwd(), '../shared/test-vectors/avb');
    const expanded = await expandSparseImage(path.join(vectors, 'test_file.bin.sparse'));
    expect(expanded.equals(await readFile(path.join(vectors, 'test_file.bin')))).toBe(true);

    const info = await readSparseImage(path.join(vectors, 'test_file.bin.sparse'));
    expect(new Set(info.chunks.map((chunk) => chunk.kind))).toEqual(new Set(['raw', 'dont_care', 'fill']));
  });

  it('expands img2simg output', async () => {
    const theirs = path.join(dir, 'theirs-1024.simg');
    expect((await expandSparseImage(theirs)).equals(padToBlocks(raw, 1024))).toBe(true);

    const expanded = path.join(dir, 'theirs-expanded.raw');
    const { rawSize } = await unsparseImages([theirs], expanded);
    expect(rawSize).toBe(padToBlocks(raw, 1024).length);
    expect((await readFile(expanded)).equals(padToBlocks(raw, 1024))).toBe(true);
  });
});

describe('split sparse images', () => {
  const maxFileSize = 100 * 1024;
  let parts: string[];

  beforeAll(async () => {
    parts = await writeSparseImage(rawPath, path.join(dir, 'split.simg'), { maxFileSize });
  });

  it('keeps every part within the size limit', async () => {
    expect(parts.length).toBeGreaterThan(2);
    expect(parts.map((part) => path.basename(part))).toEqual(parts.map((_, index) => `split.${index}.simg`));
    for (const part of parts) expect((await stat(part)).size).toBeLessThanOrEqual(maxFileSize);
  });

  it('makes each part cover the whole image', async () => {
    const totalBlocks = Math.ceil(raw.length / 4096);
    for (const part of parts) {
      const info = await readSparseImage(part);
      expect(info.header.totalBlocks).toBe(totalBlocks);
      const own = info.chunks.filter((chunk) => chunk.kind !== 'dont_care');
      expect(own.length).toBeGreaterThan(0);
    }
  });

  it('simg2img of all parts in order gives the raw image', async () => {
    const expanded = path.join(dir, 'split-simg2img.raw');
    await runTool('simg2img', [...parts, expanded]);
    expect((await readFile(expanded)).equals(padToBlocks(raw, 4096))).toBe(true);
  });

  it('our reader of all parts in order gives the raw image', async () => {
    const expanded = path.join(dir, 'split-ours.raw');
    await unsparseImages(parts, expanded);
    expect((await readFile(expanded)).equals(padToBlocks(raw, 4096))).toBe(true);
  });

  it('moves a FILL chunk that does not fit to the next part', async () => {
    // With 1024-byte blocks and a 3146-byte limit, a part has 3094 bytes for chunks:
    // RAW 3 blocks (3084) fits, the FILL (16) does not.
    const small = Buffer.concat([randomBytes(3 * 1024), fill(0x5a5a5a5a, 1024), randomBytes(2 * 1024)]);
    const smallPath = path.join(dir, 'small.raw');
    await writeFile(smallPath, small);
    const smallParts = await writeSparseImage(smallPath, path.join(dir, 'small.simg'), { blockSize: 1024, maxFileSize: 3146 });

    const layouts = await Promise.all(smallParts.map(async (part) => (await readSparseImage(part)).chunks.map((chunk) => `${chunk.kind} ${chunk.blocks}`)));
    expect(layouts).toEqual([['raw 3', 'dont_care 3'], ['dont_care 3', 'fill 1', 'raw 2']]);
    const expanded = path.join(dir, 'small-expanded.raw');
    await runTool('simg2img', [...smallParts, expanded]);
    expect((await readFile(expanded)).equals(small)).toBe(true);
  });

  it('writes one file named as given when the image fits', async () => {
    const written = await writeSparseImage(rawPath, path.join(dir, 'fits.simg'), { maxFileSize: 64 * 1024 * 1024 });
    expect(written).toEqual([path.join(dir, 'fits.simg')]);
    expect((await readFile(written[0]!)).equals(await readFile(path.join(dir, 'theirs-4096.simg')))).toBe(true);
  });

  it('rejects a limit below one block and its headers', async () => {
    const error = await writeSparseImage(rawPath, path.join(dir, 'tiny.simg'), { maxFileSize: 4000 }).catch((caught: QwamosError) => caught);
    expect((error as QwamosError).code).toBe('LIMIT_EXCEEDED');
    expect((error as QwamosError).message).toContain('each file needs at least 4160 bytes');
  });
});

describe('damaged sparse images', () => {
  let valid: Buffer;

  beforeAll(async () => {
    valid = await readFile(path.join(dir, 'ours-4096.simg'));
  });

  async function readError(bytes: Buffer): Promise<QwamosError> {
    const error = await readSparseImage(bytes).catch((caught: unknown) => caught);
    if (!(error instanceof QwamosError)) throw new Error(`expected a QwamosError, got ${String(error)}`);
    return error;
  }

  it('rejects a total block count that does not match the chunks', async () => {
    const image = Buffer.from(valid);
    image.writeUInt32LE(image.readUInt32LE(16) + 1, 16);
    const error = await readError(image);
    expect(error.message).toContain(`header gives ${valid.readUInt32LE(16) + 1} blocks, but the chunks cover ${valid.readUInt32LE(16)}`);

    // simg2img also refuses the file.
    const damaged = path.join(dir, 'bad-total.simg');
    await writeFile(damaged, image);
    await expect(runTool('simg2img', [damaged, path.join(dir, 'bad-total.raw')])).rejects.toThrow();
  });

  it('rejects a wrong magic', async () => {
    const image = Buffer.from(valid);
    image.writeUInt32LE(0x12345678, 0);
    expect((await readError(image)).message).toContain('magic is 0x12345678, expected 0xed26ff3a');
  });

  it('rejects version 2.0', async () => {
    const image = Buffer.from(valid);
    image.writeUInt16LE(2, 4);
    expect((await readError(image)).message).toContain('version 2.0 is not supported; only version 1.0');
  });

  it('rejects version 1.1', async () => {
    const image = Buffer.from(valid);
    image.writeUInt16LE(1, 6);
    expect((await readError(image)).message).toContain('version 1.1 is not supported');
  });

  it('rejects header sizes other than 28 and 12', async () => {
    const image = Buffer.from(valid);
    image.writeUInt16LE(16, 10);
    expect((await readError(image)).message).toContain('header sizes are 28 and 16');
  });

  it('rejects a truncated file', async () => {
    const error = await readError(valid.subarray(0, valid.length - 100));
    expect(error.message).toContain('is truncated: chunk 6 ends at byte');
  });

  it('rejects a file cut inside the file header', async () => {
    expect((await readError(valid.subarray(0, 20))).message).toContain('fewer than the 28-byte sparse header');
  });

  it('rejects a RAW chunk whose total_sz does not match its blocks', async () => {
    const image = Buffer.from(valid);
    image.writeUInt32LE(image.readUInt32LE(28 + 8) + 4, 28 + 8);
    expect((await readError(image)).message).toContain('chunk 0 (RAW, 3 blocks) has total_sz 12304, but that chunk takes 12300 bytes');
  });

  it('rejects an unknown chunk type', async () => {
    const image = Buffer.from(valid);
    image.writeUInt16LE(0xcac9, 28);
    expect((await readError(image)).message).toContain('unknown type 0xcac9');
  });

  it('rejects bytes after the last chunk', async () => {
    expect((await readError(Buffer.concat([valid, Buffer.alloc(8)]))).message).toContain('has 8 bytes after its last chunk');
  });

  describe('CRC32 chunk', () => {
    /** Builds a sparse file: 2 RAW blocks, 1 DONT_CARE block, then a CRC32 chunk holding `checksum`. */
    function withCrc(data: Buffer, checksum: number): Buffer {
      const header = Buffer.alloc(28);
      header.writeUInt32LE(0xed26ff3a, 0);
      header.writeUInt16LE(1, 4);
      header.writeUInt16LE(28, 8);
      header.writeUInt16LE(12, 10);
      header.writeUInt32LE(4096, 12);
      header.writeUInt32LE(3, 16);
      header.writeUInt32LE(3, 20);
      const chunk = (type: number, blocks: number, totalSize: number): Buffer => {
        const bytes = Buffer.alloc(12);
        bytes.writeUInt16LE(type, 0);
        bytes.writeUInt32LE(blocks, 4);
        bytes.writeUInt32LE(totalSize, 8);
        return bytes;
      };
      const crcValue = Buffer.alloc(4);
      crcValue.writeUInt32LE(checksum);
      return Buffer.concat([header, chunk(0xcac1, 2, 12 + 8192), data, chunk(0xcac3, 1, 12), chunk(0xcac4, 0, 16), crcValue]);
    }

    const data = randomBytes(8192);
    const expectedCrc = crc32(Buffer.concat([data, Buffer.alloc(4096)]));

    it('accepts a matching checksum, counting DONT_CARE as zeros', async () => {
      const image = withCrc(data, expectedCrc);
      expect((await expandSparseImage(image)).equals(Buffer.concat([data, Buffer.alloc(4096)]))).toBe(true);

      // simg2img reads the same file (it skips CRC32 chunks).
      const file = path.join(dir, 'crc.simg');
      await writeFile(file, image);
      await runTool('simg2img', [file, path.join(dir, 'crc.raw')]);
      expect((await readFile(path.join(dir, 'crc.raw'))).equals(Buffer.concat([data, Buffer.alloc(4096)]))).toBe(true);
    });

    it('rejects a wrong checksum unless checking is off', async () => {
      const image = withCrc(data, (expectedCrc ^ 1) >>> 0);
      const error = await expandSparseImage(image).catch((caught: QwamosError) => caught);
      expect((error as QwamosError).code).toBe('VERIFY_FAILED');
      expect((error as QwamosError).message).toContain(`data before it has CRC32 0x${expectedCrc.toString(16)}`);
      expect((await expandSparseImage(image, { verifyCrc: false })).length).toBe(3 * 4096);
    });
  });
});

describe('sparse writer input checks', () => {
  it.each([512, 1026, 0])('rejects block size %i', async (blockSize) => {
    const error = await writeSparseImage(rawPath, path.join(dir, 'bad.simg'), { blockSize }).catch((caught: QwamosError) => caught);
    expect((error as QwamosError).code).toBe('LIMIT_EXCEEDED');
    expect((error as QwamosError).message).toContain('multiple of 4 and at least 1024');
  });

  it('names a missing raw image', async () => {
    const error = await writeSparseImage(path.join(dir, 'missing.raw'), path.join(dir, 'bad.simg')).catch((caught: QwamosError) => caught);
    expect((error as QwamosError).code).toBe('INPUT_NOT_FOUND');
  });

  it('rejects parts of different images together', async () => {
    const error = await unsparseImages([path.join(dir, 'ours-4096.simg'), path.join(dir, 'ours-8192.simg')], path.join(dir, 'mixed.raw')).catch((caught: QwamosError) => caught);
    expect((error as QwamosError).message).toContain('parts of one image must agree');
  });
});

describe('sparse pack and unpack commands', () => {
  async function runCommand(command: { run(argv: string[]): Promise<number> }, argv: string[]): Promise<string> {
    let stdout = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout += String(chunk);
      return true;
    });
    try {
      expect(await command.run(argv)).toBe(0);
      return stdout;
    } finally {
      spy.mockRestore();
    }
  }

  it('pack splits with a K suffix and unpack reassembles', async () => {
    const packed = JSON.parse(await runCommand(sparsePackCommand, [rawPath, path.join(dir, 'cli.simg'), '--max-file-size', '100K', '--json']));
    const files = packed.files.map((entry: { path: string }) => entry.path);
    expect(files.length).toBeGreaterThan(2);
    expect(packed.files.every((entry: { size: number }) => entry.size <= 100 * 1024)).toBe(true);

    const output = path.join(dir, 'cli.raw');
    const unpacked = JSON.parse(await runCommand(sparseUnpackCommand, [...files, output, '--json']));
    expect(unpacked.size).toBe(padToBlocks(raw, 4096).length);
    expect((await readFile(output)).equals(padToBlocks(raw, 4096))).toBe(true);
  });

  it('rejects a size that is not a number', async () => {
    const error = await sparsePackCommand.run([rawPath, 'x.simg', '--max-file-size', '10 MB']).catch((caught: QwamosError) => caught);
    expect((error as QwamosError).code).toBe('USAGE');
    expect((error as QwamosError).message).toContain("--max-file-size '10 MB' is not a size");
  });

  it('unpack needs an input and an output', async () => {
    const error = await sparseUnpackCommand.run(['only.simg']).catch((caught: QwamosError) => caught);
    expect((error as QwamosError).message).toContain('give at least one sparse image and the raw image');
  });
});
