/**
 * dm-verity hash tree computation with level 0, the hashing of every data
 * block, spread over worker threads. Each worker hashes one contiguous range
 * of data blocks and writes the digests straight into a shared level-0
 * buffer. The upper levels are about 1/128 of the work for sha256 and are
 * computed on the calling thread.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { QwamosError } from '../core/errors.js';
import {
  READ_CHUNK_SIZE,
  buildTree,
  computeHashTree,
  hashTreeLayout,
  sourceLength,
  validateHashTreeParams,
  type HashTree,
  type HashTreeParams,
  type HashTreeSource,
} from './verity.js';

export interface ParallelHashOptions {
  /** Number of worker threads. Default: os.availableParallelism(), reduced so each worker gets at least MIN_BLOCKS_PER_WORKER blocks. */
  workers?: number;
}

/** Below this many data blocks per worker, starting a thread costs more than it saves. */
export const MIN_BLOCKS_PER_WORKER = 4096;

/*
 * The worker runs from a data: URL so that it starts the same way from the
 * compiled dist/ files and from the TypeScript sources under vitest. Node.js
 * 20 cannot load a .ts file as a worker. The code repeats the salted block
 * hashing and the double-buffered chunked read of verity.ts in plain
 * JavaScript, so a change to one needs the same change in the other.
 */
const WORKER_SOURCE = `
import { hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { workerData } from 'node:worker_threads';

const { path, data, firstBlock, blockCount, dataBlockSize, hashAlgorithm, digestSize, salt, digestStride, leafDigests, chunkSize } = workerData;
const output = Buffer.from(leafDigests);
const input = Buffer.allocUnsafe(salt.length + dataBlockSize);
input.set(salt, 0);

// Hashes blocks that have no room for the salt in front of them, by copying each behind the salt.
function hashBlocks(bytes, first, count) {
  for (let i = 0; i < count; i++) {
    input.set(bytes.subarray(i * dataBlockSize, (i + 1) * dataBlockSize), salt.length);
    output.write(hash(hashAlgorithm, input, 'binary'), (first + i) * digestStride, digestSize, 'latin1');
  }
}

async function readFully(handle, buffer, position) {
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, position + filled);
    if (bytesRead === 0) {
      throw new Error('dm-verity data file ' + path + ' ended at byte ' + (position + filled) + ' while hashing; another process shortened it, so rebuild the image');
    }
    filled += bytesRead;
  }
  return buffer;
}

// Hashes the blocks behind salt.length bytes of headroom in chunk, writing the salt in front of each block first.
function hashChunkInPlace(chunk, first) {
  const count = (chunk.length - salt.length) / dataBlockSize;
  for (let i = 0; i < count; i++) {
    const start = i * dataBlockSize;
    chunk.set(salt, start);
    output.write(hash(hashAlgorithm, chunk.subarray(start, start + salt.length + dataBlockSize), 'binary'), (first + i) * digestStride, digestSize, 'latin1');
  }
}

async function hashFileRange() {
  const blocksPerChunk = Math.max(1, Math.floor(chunkSize / dataBlockSize));
  const bufferSize = salt.length + Math.min(blocksPerChunk, blockCount) * dataBlockSize;
  let readBuffer = Buffer.allocUnsafe(bufferSize);
  let hashBuffer = Buffer.allocUnsafe(bufferSize);
  const handle = await open(path, 'r');
  const readChunk = async (buffer, done) => {
    const count = Math.min(blocksPerChunk, blockCount - done);
    await readFully(handle, buffer.subarray(salt.length, salt.length + count * dataBlockSize), (firstBlock + done) * dataBlockSize);
    return buffer.subarray(0, salt.length + count * dataBlockSize);
  };

  let pending = readChunk(readBuffer, 0);
  try {
    for (let done = 0; done < blockCount; done += blocksPerChunk) {
      const chunk = await pending;
      [readBuffer, hashBuffer] = [hashBuffer, readBuffer];
      const next = done + blocksPerChunk;
      pending = next < blockCount ? readChunk(readBuffer, next) : undefined;
      hashChunkInPlace(chunk, firstBlock + done);
    }
  } finally {
    await pending?.catch(() => undefined);
    await handle.close();
  }
}

if (data !== undefined) {
  hashBlocks(data, firstBlock, blockCount);
} else {
  await hashFileRange();
}
`;

const WORKER_URL = new URL(`data:text/javascript,${encodeURIComponent(WORKER_SOURCE)}`);

/**
 * Computes the same tree and root digest as computeHashTree, hashing the
 * data blocks on worker threads. Each worker opens a file source itself and
 * reads its range in READ_CHUNK_SIZE chunks, two buffers per worker. Each
 * worker gets a copy of its range of a Uint8Array source.
 * When `options.workers` is unset and only one worker would be used (one
 * CPU, or under 2 * MIN_BLOCKS_PER_WORKER data blocks), the tree is
 * computed on the calling thread instead.
 */
export async function computeHashTreeParallel(source: HashTreeSource, params: HashTreeParams, options: ParallelHashOptions = {}): Promise<HashTree> {
  validateHashTreeParams(params);
  const length = await sourceLength(source, params.dataBlockSize);
  const layout = hashTreeLayout(length / params.dataBlockSize, params);
  const workerCount = chooseWorkerCount(layout.dataBlocks, options.workers);
  if (workerCount === 1 && options.workers === undefined) return computeHashTree(source, params);

  const leafBlocks = layout.levelBlocks[0] ?? 1;
  const shared = new SharedArrayBuffer(leafBlocks * params.hashBlockSize);

  const ranges = splitBlocks(layout.dataBlocks, workerCount);
  await Promise.all(ranges.map(([firstBlock, blockCount]) => {
    // Copies the range into its own ArrayBuffer, which is then moved to the worker without a second copy.
    // Buffer#slice() would return a view and the transfer would detach the caller's buffer.
    const data = source instanceof Uint8Array ? new Uint8Array(source.subarray(firstBlock * params.dataBlockSize, (firstBlock + blockCount) * params.dataBlockSize)) : undefined;
    const workerData = {
      path: source instanceof Uint8Array ? undefined : source.path,
      data,
      firstBlock,
      blockCount,
      dataBlockSize: params.dataBlockSize,
      hashAlgorithm: params.hashAlgorithm,
      digestSize: layout.digestSize,
      salt: params.salt,
      digestStride: layout.digestStride,
      leafDigests: shared,
      chunkSize: READ_CHUNK_SIZE,
    };
    return runWorker(workerData, data === undefined ? [] : [data.buffer]);
  }));

  return buildTree(Buffer.from(shared), layout, params);
}

function chooseWorkerCount(dataBlocks: number, requested: number | undefined): number {
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < 1) {
      throw new QwamosError('INPUT_INVALID', `dm-verity worker count ${requested} is invalid; give a whole number of at least 1`);
    }
    return Math.min(requested, dataBlocks);
  }
  const useful = Math.max(1, Math.floor(dataBlocks / MIN_BLOCKS_PER_WORKER));
  return Math.min(availableParallelism(), useful);
}

/** Splits [0, total) into `parts` contiguous [first, count] ranges whose sizes differ by at most one. */
function splitBlocks(total: number, parts: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  let first = 0;
  for (let part = 0; part < parts; part++) {
    const count = Math.floor(total / parts) + (part < total % parts ? 1 : 0);
    ranges.push([first, count]);
    first += count;
  }
  return ranges;
}

function runWorker(workerData: Record<string, unknown>, transferList: ArrayBuffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_URL, { workerData, transferList });
    worker.once('error', (error) => {
      reject(new QwamosError('INPUT_INVALID', error.message, { cause: error }));
    });
    worker.once('exit', (code) => {
      if (code === 0) resolve();
      else reject(new QwamosError('COMMAND_FAILED', `dm-verity hashing worker thread exited with code ${code}`));
    });
  });
}
