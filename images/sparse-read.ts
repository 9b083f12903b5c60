/**
 * Reads Android sparse images: validates the file header and every chunk
 * header, and expands one or several sparse files into the raw image, as
 * `simg2img` does. Chunk data is streamed in pieces of at most 4 MiB.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { produceAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import { openByteSource, type ByteSource } from './byte-source.js';
import {
  CHUNK_HEADER_SIZE, CHUNK_KIND_BY_TYPE, SPARSE_HEADER_SIZE, SPARSE_MAGIC, SPARSE_MAJOR_VERSION, SPARSE_MINOR_VERSION,
  decodeChunkHeader, decodeSparseHeader, encodedChunkSize, type ChunkKind, type SparseHeader,
} from './sparse-format.js';

export interface SparseChunk {
  kind: ChunkKind;
  /** First output block; a CRC32 chunk covers no blocks. */
  startBlock: number;
  blocks: number;
  /** Offset of the chunk data (after its 12-byte header) in the sparse file. */
  dataOffset: number;
  /** FILL only: the repeated 4 bytes. */
  pattern?: Buffer;
  /** CRC32 only: the stored checksum. */
  crc32?: number;
}

export interface SparseImageInfo {
  header: SparseHeader;
  chunks: SparseChunk[];
  /** Size of the expanded image: total blocks times block size. */
  rawSize: number;
  /** Size of the sparse file. */
  fileSize: number;
}

export interface UnsparseOptions {
  /** Checks CRC32 chunks against the expanded data (default true). */
  verifyCrc?: boolean;
}


const PIECE_SIZE = 4 * 1024 * 1024;

/** Returns true when the file or bytes start with the sparse magic. */
export async function isSparseImage(source: string | Uint8Array): Promise<boolean> {
  const bytes = await openSource(source);
  try {
    const head = await bytes.read(0, 4);
    return head.length === 4 && head.readUInt32LE(0) === SPARSE_MAGIC;
  } finally {
    await bytes.close();
  }
}

/**
 * Reads and validates a sparse image's headers without expanding it.
 * Rejects a wrong magic, a version other than 1.0, header sizes other than
 * 28 and 12, and an unknown chunk type. Also rejects a chunk whose total_sz
 * does not match its type and block count, a total block count that differs
 * from the sum of the chunks, a truncated file, and bytes after the last chunk.
 */
export async function readSparseImage(source: string | Uint8Array): Promise<SparseImageInfo> {
  const bytes = await openSource(source);
  try {
    return await readChunkTable(bytes);
  } finally {
    await bytes.close();
  }
}

/** Expands a sparse image into memory; DONT_CARE blocks become zeros. For images that fit in memory. */
export async function expandSparseImage(source: string | Uint8Array, options: UnsparseOptions = {}): Promise<Buffer> {
  const bytes = await openSource(source);
  try {
    const info = await readChunkTable(bytes);
    const output = Buffer.alloc(info.rawSize);
    await applyChunks(bytes, info, options, async (data, offset) => {
      data.copy(output, offset);
    }, true);
    return output;
  } finally {
    await bytes.close();
  }
}

/**
 * Writes the raw image that `sparsePaths` describe to `rawPath`, applying
 * the files in order as `simg2img FILE... RAW` does: blocks a file marks
 * DONT_CARE keep what earlier files wrote, and are zero where no file wrote.
 * All files must have the same block size and total block count, as the
 * parts of one split image have.
 */
export async function unsparseImages(sparsePaths: readonly string[], rawPath: string, options: UnsparseOptions = {}): Promise<{ rawSize: number; images: SparseImageInfo[] }> {
  if (sparsePaths.length === 0) {
    throw new QwamosError('USAGE', 'no sparse image given; name at least one sparse file to expand');
  }

  const images: SparseImageInfo[] = [];
  for (const sparsePath of sparsePaths) images.push(await readSparseImage(sparsePath));
  const first = images[0]!;
  images.forEach((image, index) => {
    if (image.header.blockSize !== first.header.blockSize || image.header.totalBlocks !== first.header.totalBlocks) {
      throw new QwamosError('INPUT_INVALID', `sparse file ${sparsePaths[index]} has ${image.header.totalBlocks} blocks of ${image.header.blockSize} bytes, but ${sparsePaths[0]} has ${first.header.totalBlocks} of ${first.header.blockSize}; parts of one image must agree`);
    }
  });

  await produceAtomic(rawPath, async (temporaryPath) => {
    const output = await open(temporaryPath, 'w', 0o644);
    try {
      // Truncating first leaves every block that no chunk writes as zeros (a hole on disk).
      await output.truncate(first.rawSize);
      for (const [index, sparsePath] of sparsePaths.entries()) {
        const bytes = await openSource(sparsePath);
        try {
          await applyChunks(bytes, images[index]!, options, async (data, offset) => {
            await writeAll(output, data, offset);
          }, index === 0);
        } finally {
          await bytes.close();
        }
      }
      await output.sync();
    } finally {
      await output.close();
    }
  });
  return { rawSize: first.rawSize, images };
}

async function readChunkTable(bytes: ByteSource): Promise<SparseImageInfo> {
  if (bytes.size < SPARSE_HEADER_SIZE) {
    throw new QwamosError('INPUT_INVALID', `${bytes.label} is truncated: it has ${bytes.size} bytes, fewer than the ${SPARSE_HEADER_SIZE}-byte sparse header`);
  }
  const { magic, ...header } = decodeSparseHeader(await bytes.read(0, SPARSE_HEADER_SIZE));
  checkFileHeader(bytes.label, magic, header);

  const chunks: SparseChunk[] = [];
  let offset = SPARSE_HEADER_SIZE;
  let block = 0;
  for (let index = 0; index < header.totalChunks; index += 1) {
    if (offset + CHUNK_HEADER_SIZE > bytes.size) {
      throw new QwamosError('INPUT_INVALID', `${bytes.label} is truncated: chunk ${index} of ${header.totalChunks} starts at byte ${offset}, but the file has ${bytes.size} bytes`);
    }
    const chunkHeader = decodeChunkHeader(await bytes.read(offset, CHUNK_HEADER_SIZE));
    const kind = CHUNK_KIND_BY_TYPE.get(chunkHeader.type);
    if (kind === undefined) {
      throw new QwamosError('INPUT_INVALID', `${bytes.label}: chunk ${index} at byte ${offset} has unknown type 0x${chunkHeader.type.toString(16)}; known types are RAW 0xcac1, FILL 0xcac2, DONT_CARE 0xcac3 and CRC32 0xcac4`);
    }

    // libsparse ignores the block count of a CRC32 chunk: it covers no output blocks.
    const blocks = kind === 'crc32' ? 0 : chunkHeader.blocks;
    const expectedSize = encodedChunkSize(kind, blocks, header.blockSize);
    if (chunkHeader.totalSize !== expectedSize) {
      throw new QwamosError('INPUT_INVALID', `${bytes.label}: chunk ${index} (${kind.toUpperCase()}, ${blocks} blocks) has total_sz ${chunkHeader.totalSize}, but that chunk takes ${expectedSize} bytes with ${header.blockSize}-byte blocks`);
    }
    const dataOffset = offset + CHUNK_HEADER_SIZE;
    if (offset + expectedSize > bytes.size) {
      throw new QwamosError('INPUT_INVALID', `${bytes.label} is truncated: chunk ${index} ends at byte ${offset + expectedSize}, but the file has ${bytes.size} bytes`);
    }

    const chunk: SparseChunk = { kind, startBlock: block, blocks, dataOffset };
    if (kind === 'fill') chunk.pattern = await bytes.read(dataOffset, 4);
    if (kind === 'crc32') chunk.crc32 = (await bytes.read(dataOffset, 4)).readUInt32LE(0);
    chunks.push(chunk);
    block += blocks;
    offset += expectedSize;
  }

  if (block !== header.totalBlocks) {
    throw new QwamosError('INPUT_INVALID', `${bytes.label}: the header gives ${header.totalBlocks} blocks, but the chunks cover ${block}; the file is damaged or its writer is faulty`);
  }
  if (offset !== bytes.size) {
    throw new QwamosError('INPUT_INVALID', `${bytes.label} has ${bytes.size - offset} bytes after its last chunk (chunk count ${header.totalChunks}); the file is damaged or the chunk count is wrong`);
  }
  return { header, chunks, rawSize: header.totalBlocks * header.blockSize, fileSize: bytes.size };
}

function checkFileHeader(label: string, magic: number, header: SparseHeader): void {
  if (magic !== SPARSE_MAGIC) {
    throw new QwamosError('INPUT_INVALID', `${label} is not an Android sparse image: magic is 0x${magic.toString(16).padStart(8, '0')}, expected 0x${SPARSE_MAGIC.toString(16)}`);
  }
  if (header.majorVersion !== SPARSE_MAJOR_VERSION || header.minorVersion !== SPARSE_MINOR_VERSION) {
    throw new QwamosError('INPUT_INVALID', `${label}: sparse format version ${header.majorVersion}.${header.minorVersion} is not supported; only version 1.0 exists`);
  }
  if (header.fileHeaderSize !== SPARSE_HEADER_SIZE || header.chunkHeaderSize !== CHUNK_HEADER_SIZE) {
    throw new QwamosError('INPUT_INVALID', `${label}: header sizes are ${header.fileHeaderSize} and ${header.chunkHeaderSize}; sparse version 1.0 uses a ${SPARSE_HEADER_SIZE}-byte file header and ${CHUNK_HEADER_SIZE}-byte chunk headers`);
  }
  if (header.blockSize === 0 || header.blockSize % 4 !== 0) {
    throw new QwamosError('INPUT_INVALID', `${label}: block size ${header.blockSize} is invalid; it must be a non-zero multiple of 4`);
  }
  if (header.totalBlocks * header.blockSize > Number.MAX_SAFE_INTEGER) {
    throw new QwamosError('LIMIT_EXCEEDED', `${label}: ${header.totalBlocks} blocks of ${header.blockSize} bytes exceed 2^53 bytes, which this reader does not handle`);
  }
}

/**
 * Calls `write` with each piece of output data and its offset in the raw
 * image, and checks CRC32 chunks when asked. DONT_CARE blocks produce no
 * call, but count as zeros for the CRC, as libsparse counts them. With
 * `targetIsZero` (nothing written to the output yet), zero FILL chunks
 * produce no call either.
 */
async function applyChunks(bytes: ByteSource, info: SparseImageInfo, options: UnsparseOptions, write: (data: Buffer, offset: number) => Promise<void>, targetIsZero = false): Promise<void> {
  const blockSize = info.header.blockSize;
  const checkCrc = (options.verifyCrc ?? true) && info.chunks.some((chunk) => chunk.kind === 'crc32');
  let crc = 0;

  for (const [index, chunk] of info.chunks.entries()) {
    const outputStart = chunk.startBlock * blockSize;
    const length = chunk.blocks * blockSize;

    if (chunk.kind === 'crc32') {
      if (checkCrc && chunk.crc32 !== crc) {
        throw new QwamosError('VERIFY_FAILED', `${bytes.label}: CRC32 chunk ${index} contains 0x${chunk.crc32!.toString(16)}, but the data before it has CRC32 0x${crc.toString(16)}; the file is damaged`);
      }
      continue;
    }
    if (chunk.kind === 'dont_care' && !checkCrc) continue;
    // A zero FILL over a target that is still all zeros changes nothing.
    if (chunk.kind === 'fill' && targetIsZero && chunk.pattern!.readUInt32LE(0) === 0 && !checkCrc) continue;

    for (let done = 0; done < length; done += PIECE_SIZE) {
      const pieceLength = Math.min(PIECE_SIZE, length - done);
      const piece = await chunkPiece(bytes, chunk, done, pieceLength);
      if (checkCrc) crc = crc32(piece, crc);
      if (chunk.kind !== 'dont_care') await write(piece, outputStart + done);
    }
  }
}

/** Returns `length` output bytes of a chunk starting `skip` bytes into it. */
async function chunkPiece(bytes: ByteSource, chunk: SparseChunk, skip: number, length: number): Promise<Buffer> {
  if (chunk.kind === 'raw') return bytes.read(chunk.dataOffset + skip, length);
  if (chunk.kind === 'fill') return Buffer.alloc(length, chunk.pattern!);
  return Buffer.alloc(length);
}

async function writeAll(handle: FileHandle, data: Buffer, offset: number): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const result = await handle.write(data, written, data.length - written, offset + written);
    written += result.bytesWritten;
  }
}

function openSource(source: string | Uint8Array): Promise<ByteSource> {
  return openByteSource(source, 'sparse image');
}
