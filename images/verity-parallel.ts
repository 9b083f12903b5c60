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
 * 20 cannot load a .ts file as a worker. The code repeats hashBlock and
 * the chunked read of verity.ts in plain JavaScript.
 */
const WORKER_SOURCE = `
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { workerData } from 'node:worker_threads';

const { path, data, firstBlock, blockCount, dataBlockSize, hashAlgorithm, salt, digestStride, leafDigests, chunkSize } = workerData;
const output = new Uint8Array(leafDigests);

function hashBlocks(bytes, first, count) {
  for (let i = 0; i < count; i++) {
    const block = bytes.subarray(i * dataBlockSize, (i + 1) * dataBlockSize);
    output.set(createHash(hashAlgorithm).update(salt).update(block).digest(), (first + i) * digestStride);
  }
}

if (data !== undefined) {
  hashBlocks(data, firstBlock, blockCount);
} else {
  const blocksPerChunk = Math.max(1, Math.floor(chunkSize / dataBlockSize));
  const chunk = Buffer.alloc(blocksPerChunk * dataBlockSize);
  const fd = openSync(path, 'r');
  try {
    for (let done = 0; done < blockCount; done += blocksPerChunk) {
      const count = Math.min(blocksPerChunk, blockCount - done);
      const expected = count * dataBlockSize;
      const position = (firstBlock + done) * dataBlockSize;
      let filled = 0;
      while (filled < expected) {
        const bytesRead = readSync(fd, chunk, filled, expected - filled, position + filled);
        if (bytesRead === 0) {
          throw new Error('dm-verity data file ' + path + ' ended at byte ' + (position + filled) + ' while hashing; another process shortened it, so rebuild the image');
        }
        filled += bytesRead;
      }
      hashBlocks(chunk, firstBlock + done, count);
    }
  } finally {
    closeSync(fd);
  }
}
`;

const WORKER_URL = new URL(`data:text/javascript,${encodeURIComponent(WORKER_SOURCE)}`);

/**
 * Computes the same tree and root digest as computeHashTree, hashing the
 * data blocks on worker threads. A file source is read by the workers in
 * READ_CHUNK_SIZE chunks. A Uint8Array source is copied to each worker.
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
  await Promise.all(ranges.map(([firstBlock, blockCount]) => runWorker({
    path: source instanceof Uint8Array ? undefined : source.path,
    // slice() copies the range, because posting a view would copy its whole underlying buffer.
    data: source instanceof Uint8Array ? source.slice(firstBlock * params.dataBlockSize, (firstBlock + blockCount) * params.dataBlockSize) : undefined,
    firstBlock,
    blockCount,
    dataBlockSize: params.dataBlockSize,
    hashAlgorithm: params.hashAlgorithm,
    salt: params.salt,
    digestStride: layout.digestStride,
    leafDigests: shared,
    chunkSize: READ_CHUNK_SIZE,
  })));

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

function runWorker(workerData: Record<string, unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_URL, { workerData });
    worker.once('error', (error) => {
      reject(new QwamosError('INPUT_INVALID', error.message, { cause: error }));
    });
    worker.once('exit', (code) => {
      if (code === 0) resolve();
      else reject(new QwamosError('COMMAND_FAILED', `dm-verity hashing worker thread exited with code ${code}`));
    });
  });
}
