/**
 * Android sparse image format (AOSP system/core/libsparse, sparse_format.h).
 * All integers are little-endian.
 *
 * File header, 28 bytes (offset, size):
 *   0 u32 magic 0xED26FF3A   4 u16 major_version (1)   6 u16 minor_version (0)
 *   8 u16 file_hdr_sz (28)  10 u16 chunk_hdr_sz (12)   12 u32 blk_sz
 *  16 u32 total_blks        20 u32 total_chunks        24 u32 image_checksum
 *
 * Chunk header, 12 bytes, followed by the chunk data:
 *   0 u16 chunk_type   2 u16 reserved1   4 u32 chunk_sz (output blocks)
 *   8 u32 total_sz (header and data in bytes)
 *
 * Chunk data: RAW has chunk_sz * blk_sz bytes, FILL a 4-byte pattern repeated
 * over the blocks, DONT_CARE nothing (the blocks keep what the target had),
 * CRC32 a u32 CRC-32 of all output bytes so far, with DONT_CARE counted as zeros.
 */

export const SPARSE_MAGIC = 0xed26ff3a;
export const SPARSE_MAJOR_VERSION = 1;
export const SPARSE_MINOR_VERSION = 0;
export const SPARSE_HEADER_SIZE = 28;
export const CHUNK_HEADER_SIZE = 12;

export const CHUNK_TYPE_RAW = 0xcac1;
export const CHUNK_TYPE_FILL = 0xcac2;
export const CHUNK_TYPE_DONT_CARE = 0xcac3;
export const CHUNK_TYPE_CRC32 = 0xcac4;

export type ChunkKind = 'raw' | 'fill' | 'dont_care' | 'crc32';

export const CHUNK_KIND_BY_TYPE: ReadonlyMap<number, ChunkKind> = new Map([
  [CHUNK_TYPE_RAW, 'raw'],
  [CHUNK_TYPE_FILL, 'fill'],
  [CHUNK_TYPE_DONT_CARE, 'dont_care'],
  [CHUNK_TYPE_CRC32, 'crc32'],
]);

export const CHUNK_TYPE_BY_KIND: Readonly<Record<ChunkKind, number>> = {
  raw: CHUNK_TYPE_RAW,
  fill: CHUNK_TYPE_FILL,
  dont_care: CHUNK_TYPE_DONT_CARE,
  crc32: CHUNK_TYPE_CRC32,
};

export interface SparseHeader {
  majorVersion: number;
  minorVersion: number;
  fileHeaderSize: number;
  chunkHeaderSize: number;
  blockSize: number;
  totalBlocks: number;
  totalChunks: number;
  imageChecksum: number;
}

export function encodeSparseHeader(blockSize: number, totalBlocks: number, totalChunks: number): Buffer {
  const header = Buffer.alloc(SPARSE_HEADER_SIZE);
  header.writeUInt32LE(SPARSE_MAGIC, 0);
  header.writeUInt16LE(SPARSE_MAJOR_VERSION, 4);
  header.writeUInt16LE(SPARSE_MINOR_VERSION, 6);
  header.writeUInt16LE(SPARSE_HEADER_SIZE, 8);
  header.writeUInt16LE(CHUNK_HEADER_SIZE, 10);
  header.writeUInt32LE(blockSize, 12);
  header.writeUInt32LE(totalBlocks, 16);
  header.writeUInt32LE(totalChunks, 20);
  // image_checksum stays 0, as libsparse writes it; a CRC32 chunk carries the checksum instead.
  return header;
}

/** Decodes the 28-byte file header without validating it. */
export function decodeSparseHeader(bytes: Buffer): SparseHeader & { magic: number } {
  return {
    magic: bytes.readUInt32LE(0),
    majorVersion: bytes.readUInt16LE(4),
    minorVersion: bytes.readUInt16LE(6),
    fileHeaderSize: bytes.readUInt16LE(8),
    chunkHeaderSize: bytes.readUInt16LE(10),
    blockSize: bytes.readUInt32LE(12),
    totalBlocks: bytes.readUInt32LE(16),
    totalChunks: bytes.readUInt32LE(20),
    imageChecksum: bytes.readUInt32LE(24),
  };
}

export function encodeChunkHeader(kind: ChunkKind, blocks: number, totalSize: number): Buffer {
  const header = Buffer.alloc(CHUNK_HEADER_SIZE);
  header.writeUInt16LE(CHUNK_TYPE_BY_KIND[kind], 0);
  header.writeUInt32LE(blocks, 4);
  header.writeUInt32LE(totalSize, 8);
  return header;
}

export function decodeChunkHeader(bytes: Buffer): { type: number; blocks: number; totalSize: number } {
  return { type: bytes.readUInt16LE(0), blocks: bytes.readUInt32LE(4), totalSize: bytes.readUInt32LE(8) };
}

/** Bytes that a chunk of `kind` covering `blocks` blocks takes in a sparse file. */
export function encodedChunkSize(kind: ChunkKind, blocks: number, blockSize: number): number {
  switch (kind) {
    case 'raw':
      return CHUNK_HEADER_SIZE + blocks * blockSize;
    case 'fill':
    case 'crc32':
      return CHUNK_HEADER_SIZE + 4;
    case 'dont_care':
      return CHUNK_HEADER_SIZE;
  }
}
