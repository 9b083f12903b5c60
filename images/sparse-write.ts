/**
 * Converts a raw partition image into an Android sparse image, or into
 * several sparse images that each stay under a size limit (fastboot's
 * max-download-size).
 *
 * Blocks are classified as libsparse's img2simg 29.0.6 does: a whole block
 * that repeats one 4-byte word becomes a FILL chunk (zero blocks too), every
 * other block is RAW, and neighbouring chunks of the same kind (and word)
 * merge. A single output file is therefore byte-identical to img2simg's.
 * The raw image is read twice (once to plan the chunks, once to copy them)
 * in pieces of about 4 MiB, so it is never held in memory.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { produceAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import {
  CHUNK_HEADER_SIZE, SPARSE_HEADER_SIZE, encodeChunkHeader, encodeSparseHeader, encodedChunkSize,
} from './sparse-format.js';

export interface SparseWriteOptions {
  /** Block size in bytes: a multiple of 4, at least 1024. Default 4096. */
  blockSize?: number;
  /**
   * Largest size in bytes of one output file. When the whole image does not
   * fit, it is split into several files, each a complete sparse image of the
   * whole partition that marks the blocks held by the other files DONT_CARE.
   */
  maxFileSize?: number;
}

/** A chunk to write: which output blocks it covers and how. */
export interface PlannedChunk {
  kind: 'raw' | 'fill' | 'dont_care';
  startBlock: number;
  blocks: number;
  /** FILL only: the 4 bytes that repeat over the blocks. */
  pattern?: Buffer;
}

export interface SparsePlan {
  blockSize: number;
  /** Size of the raw image; the last block is zero-padded when it is partial. */
  rawSize: number;
  totalBlocks: number;
  /** Chunks covering blocks 0 to totalBlocks - 1 in order. */
  chunks: PlannedChunk[];
}

export const DEFAULT_SPARSE_BLOCK_SIZE = 4096;
const U32_MAX = 0xffff_ffff;
const READ_TARGET = 4 * 1024 * 1024;

/**
 * Writes the raw image at `rawPath` as a sparse image at `outPath` and
 * returns the written paths. With `maxFileSize`, an image that does not fit
 * is split into `name.0.ext`, `name.1.ext`, ... beside `outPath` (which is
 * then not written); flashing or `simg2img` of all of them in order
 * restores the image.
 */
export async function writeSparseImage(rawPath: string, outPath: string, options: SparseWriteOptions = {}): Promise<string[]> {
  const blockSize = options.blockSize ?? DEFAULT_SPARSE_BLOCK_SIZE;
  checkBlockSize(blockSize);
  if (options.maxFileSize !== undefined) checkMaxFileSize(options.maxFileSize, blockSize);

  const plan = await planSparseChunks(rawPath, blockSize);
  const files = options.maxFileSize === undefined ? [plan.chunks] : splitSparsePlan(plan, options.maxFileSize);
  const outputs = files.length === 1 ? [outPath] : files.map((_, index) => splitPartPath(outPath, index));

  const input = await open(rawPath, 'r');
  try {
    for (const [index, chunks] of files.entries()) {
      await produceAtomic(outputs[index]!, (temporaryPath) => writeSparseFile(temporaryPath, input, plan, chunks));
    }
  } finally {
    await input.close();
  }
  return outputs;
}

/** Reads the raw image once and returns its chunk plan. */
export async function planSparseChunks(rawPath: string, blockSize: number): Promise<SparsePlan> {
  const rawSize = await rawFileSize(rawPath);
  const totalBlocks = Math.ceil(rawSize / blockSize);
  if (totalBlocks > U32_MAX) {
    throw new QwamosError('LIMIT_EXCEEDED', `raw image ${rawPath} has ${totalBlocks} blocks of ${blockSize} bytes; a sparse image counts at most ${U32_MAX} blocks, so use a larger block size`);
  }

  const chunks: PlannedChunk[] = [];
  const classifier = new BlockClassifier(blockSize);
  const blocksPerRead = Math.max(1, Math.floor(READ_TARGET / blockSize));
  const buffer = Buffer.alloc(blocksPerRead * blockSize);
  const handle = await open(rawPath, 'r');
  try {
    for (let block = 0; block < totalBlocks; block += blocksPerRead) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, block * blockSize);
      if (bytesRead === 0) break;
      for (let start = 0; start < bytesRead; start += blockSize) {
        const length = Math.min(blockSize, bytesRead - start);
        const pattern = length === blockSize ? classifier.uniformPattern(buffer.subarray(start, start + blockSize)) : undefined;
        appendBlock(chunks, block + start / blockSize, pattern);
      }
    }
  } finally {
    await handle.close();
  }

  const last = chunks[chunks.length - 1];
  const covered = last ? last.startBlock + last.blocks : 0;
  if (covered !== totalBlocks) {
    throw new QwamosError('INPUT_INVALID', `raw image ${rawPath} changed size while it was read (${totalBlocks} blocks before, ${covered} read); rerun when nothing writes to it`);
  }
  return { blockSize, rawSize, totalBlocks, chunks };
}

/**
 * Distributes a plan's chunks over files of at most `maxFileSize` bytes.
 * Files are filled in order, and a RAW chunk that does not fit is split at a
 * block boundary. Each file gets a DONT_CARE chunk before and after its own
 * chunks where other files hold those blocks, so it covers the whole image.
 */
export function splitSparsePlan(plan: SparsePlan, maxFileSize: number): PlannedChunk[][] {
  checkMaxFileSize(maxFileSize, plan.blockSize);
  const wholeSize = SPARSE_HEADER_SIZE + plan.chunks.reduce((total, chunk) => total + encodedChunkSize(chunk.kind, chunk.blocks, plan.blockSize), 0);
  if (wholeSize <= maxFileSize) return [plan.chunks];

  // Room for the file header and the two DONT_CARE chunks every part may need.
  const budget = maxFileSize - SPARSE_HEADER_SIZE - 2 * CHUNK_HEADER_SIZE;
  const groups: PlannedChunk[][] = [];
  let current: PlannedChunk[] = [];
  let used = 0;
  let index = 0;
  // A chunk that did not fit the previous file, or the rest of a split RAW chunk. It comes before plan.chunks[index].
  let carried: PlannedChunk | undefined;

  while (carried !== undefined || index < plan.chunks.length) {
    const chunk = carried ?? plan.chunks[index]!;
    if (carried !== undefined) carried = undefined;
    else index += 1;

    const size = encodedChunkSize(chunk.kind, chunk.blocks, plan.blockSize);
    if (used + size <= budget) {
      current.push(chunk);
      used += size;
      continue;
    }

    const fittingBlocks = chunk.kind === 'raw' ? Math.floor((budget - used - CHUNK_HEADER_SIZE) / plan.blockSize) : 0;
    if (fittingBlocks >= 1) {
      current.push({ ...chunk, blocks: fittingBlocks });
      carried = { ...chunk, startBlock: chunk.startBlock + fittingBlocks, blocks: chunk.blocks - fittingBlocks };
    } else if (current.length === 0) {
      // checkMaxFileSize guarantees room for one RAW block or one FILL chunk, so this is a bug.
      throw new Error(`sparse split: a ${chunk.kind} chunk of ${size} bytes does not fit an empty file of budget ${budget}`);
    } else {
      carried = chunk;
    }
    groups.push(current);
    current = [];
    used = 0;
  }
  if (current.length > 0) groups.push(current);

  return groups.map((group) => surroundWithDontCare(group, plan.totalBlocks));
}

/** Returns the path of part `index` of a split image: system.img becomes system.0.img. */
export function splitPartPath(outPath: string, index: number): string {
  const extension = path.extname(outPath);
  const stem = outPath.slice(0, outPath.length - extension.length);
  return `${stem}.${index}${extension}`;
}

function surroundWithDontCare(group: PlannedChunk[], totalBlocks: number): PlannedChunk[] {
  const first = group[0]!;
  const last = group[group.length - 1]!;
  const end = last.startBlock + last.blocks;
  const result: PlannedChunk[] = [];
  if (first.startBlock > 0) result.push({ kind: 'dont_care', startBlock: 0, blocks: first.startBlock });
  result.push(...group);
  if (end < totalBlocks) result.push({ kind: 'dont_care', startBlock: end, blocks: totalBlocks - end });
  return result;
}

/** Adds one block to the plan, merging it into the previous chunk when it continues it. */
function appendBlock(chunks: PlannedChunk[], block: number, pattern: Buffer | undefined): void {
  const previous = chunks[chunks.length - 1];
  const kind = pattern ? 'fill' : 'raw';
  const continues = previous !== undefined && previous.kind === kind && previous.startBlock + previous.blocks === block
    && (kind === 'raw' || previous.pattern!.equals(pattern!));
  if (continues) {
    previous.blocks += 1;
  } else {
    chunks.push({ kind, startBlock: block, blocks: 1, ...(pattern ? { pattern: Buffer.from(pattern) } : {}) });
  }
}

/** Detects blocks that repeat one 4-byte word, comparing against a cached pattern block. */
class BlockClassifier {
  private readonly patternBlock: Buffer;
  private patternWord: Buffer | undefined;

  constructor(blockSize: number) {
    this.patternBlock = Buffer.alloc(blockSize);
  }

  /** Returns the repeated 4 bytes when the whole block repeats them, otherwise undefined. */
  uniformPattern(block: Buffer): Buffer | undefined {
    const word = block.subarray(0, 4);
    if (!block.subarray(block.length - 4).equals(word)) return undefined;
    if (!this.patternWord || !this.patternWord.equals(word)) {
      this.patternWord = Buffer.from(word);
      this.patternBlock.fill(this.patternWord);
    }
    return block.equals(this.patternBlock) ? this.patternWord : undefined;
  }
}

async function writeSparseFile(destination: string, input: FileHandle, plan: SparsePlan, chunks: readonly PlannedChunk[]): Promise<void> {
  const output = await open(destination, 'w', 0o644);
  try {
    let position = 0;
    const write = async (bytes: Buffer): Promise<void> => {
      await output.write(bytes, 0, bytes.length, position);
      position += bytes.length;
    };

    const totalBlocks = chunks.reduce((total, chunk) => total + chunk.blocks, 0);
    await write(encodeSparseHeader(plan.blockSize, totalBlocks, chunks.length));
    for (const chunk of chunks) {
      await write(encodeChunkHeader(chunk.kind, chunk.blocks, encodedChunkSize(chunk.kind, chunk.blocks, plan.blockSize)));
      if (chunk.kind === 'fill') await write(chunk.pattern!);
      if (chunk.kind === 'raw') position = await copyRawBlocks(input, output, plan, chunk, position);
    }
    await output.sync();
  } finally {
    await output.close();
  }
}

/** Copies a RAW chunk's blocks from the raw image, zero-padding a partial last block. */
async function copyRawBlocks(input: FileHandle, output: FileHandle, plan: SparsePlan, chunk: PlannedChunk, position: number): Promise<number> {
  const start = chunk.startBlock * plan.blockSize;
  const length = chunk.blocks * plan.blockSize;
  const buffer = Buffer.alloc(Math.min(length, Math.max(plan.blockSize, Math.floor(READ_TARGET / plan.blockSize) * plan.blockSize)));
  let copied = 0;
  while (copied < length) {
    const pieceLength = Math.min(buffer.length, length - copied);
    const { bytesRead } = await input.read(buffer, 0, pieceLength, start + copied);
    const expected = Math.max(0, Math.min(pieceLength, plan.rawSize - start - copied));
    if (bytesRead !== expected) {
      throw new QwamosError('INPUT_INVALID', `raw image changed while it was read (got ${bytesRead} bytes at offset ${start + copied}, expected ${expected}); rerun when nothing writes to it`);
    }
    buffer.fill(0, bytesRead, pieceLength);
    await output.write(buffer, 0, pieceLength, position);
    position += pieceLength;
    copied += pieceLength;
  }
  return position;
}

async function rawFileSize(rawPath: string): Promise<number> {
  const info = await stat(rawPath).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `raw image ${rawPath} does not exist; check the path`);
    throw error;
  });
  if (!info.isFile()) throw new QwamosError('INPUT_INVALID', `raw image ${rawPath} is not a regular file`);
  return info.size;
}

/** Rejects block sizes that img2simg rejects: below 1024 or not a multiple of 4. */
export function checkBlockSize(blockSize: number): void {
  if (!Number.isInteger(blockSize) || blockSize < 1024 || blockSize % 4 !== 0 || blockSize > U32_MAX) {
    throw new QwamosError('LIMIT_EXCEEDED', `sparse block size ${blockSize} is invalid; it must be a multiple of 4 and at least 1024 (fastboot and Android use 4096)`);
  }
}

/** Rejects a size limit too small for a header, two DONT_CARE chunks and one RAW block. */
function checkMaxFileSize(maxFileSize: number, blockSize: number): void {
  const minimum = SPARSE_HEADER_SIZE + 2 * CHUNK_HEADER_SIZE + CHUNK_HEADER_SIZE + blockSize;
  if (!Number.isSafeInteger(maxFileSize) || maxFileSize < minimum) {
    throw new QwamosError('LIMIT_EXCEEDED', `maximum sparse file size ${maxFileSize} is too small; with ${blockSize}-byte blocks each file needs at least ${minimum} bytes (header, two DONT_CARE chunks and one RAW block)`);
  }
}
