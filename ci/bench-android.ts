/**
 * Benchmark group android: dm-verity hash trees against veritysetup, vbmeta
 * signing and verification with the AOSP test keys, and sparse images
 * against img2simg and simg2img.
 */
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { QwamosError } from '../core/errors.js';
import { REPO_ROOT } from '../core/schema.js';
import { unsparseImages } from '../images/sparse-read.js';
import { writeSparseImage } from '../images/sparse-write.js';
import { computeHashTree, type HashTree, type HashTreeParams } from '../images/verity.js';
import { computeHashTreeParallel } from '../images/verity-parallel.js';
import type { AvbDescriptor } from '../signing/avb-descriptors.js';
import { encodeAvbPublicKey, loadAvbKey } from '../signing/avb-key.js';
import { buildVbmeta } from '../signing/avb-vbmeta.js';
import { verifyVbmeta } from '../signing/avb-verify.js';
import {
  type BenchContext, type GroupResult, type InProcessTiming, type ToolTiming,
  formatMiB, formatMs, formatRatio, hasGnuTime, measureInProcess, median, medianMs, progress, runTimedTool, temporaryFolder,
} from './bench-measure.js';

const MiB = 1024 * 1024;
/** Size of the dm-verity data file. */
const VERITY_DATA_BYTES = 1024 * MiB;
/** Size of the raw image for the sparse benchmark. */
const SPARSE_RAW_BYTES = 256 * MiB;
/** The sparse benchmark's raw image alternates random and zero runs of this size. */
const SPARSE_RUN_BYTES = 1 * MiB;
/** Repetitions of the measurements over the large files, or --runs when that is smaller. */
const LARGE_FILE_RUNS = 5;
/** AOSP's libavb test keys (testkey_rsa*.pem), kept outside the repository beside it. */
const AVB_TEST_KEYS_DIR = path.resolve(REPO_ROOT, '../shared/test-vectors/avb');
const AVB_KEYS = [
  { algorithm: 'SHA256_RSA2048', file: 'testkey_rsa2048.pem' },
  { algorithm: 'SHA256_RSA4096', file: 'testkey_rsa4096.pem' },
  { algorithm: 'SHA256_RSA8192', file: 'testkey_rsa8192.pem' },
] as const;

/** Writes `size` bytes to `file` from `fill`, 4 MiB at a time, and fsyncs it so later timings see no writeback. */
async function writeTestFile(file: string, size: number, fill: (chunk: Buffer, offset: number) => void): Promise<void> {
  const handle = await open(file, 'w');
  try {
    const chunk = Buffer.alloc(4 * MiB);
    for (let offset = 0; offset < size; offset += chunk.length) {
      fill(chunk, offset);
      await handle.write(chunk, 0, Math.min(chunk.length, size - offset), offset);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

async function fsyncFile(file: string): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

interface VerityVariant {
  name: string;
  wallMs: number;
  cpuMs: number;
  peakRssBytes: number;
  rssGrowthBytes: number;
  rootDigest: string;
  treeMatches: boolean;
}

interface Reference {
  wallMs: number;
  cpuMs?: number;
  peakRssBytes?: number;
}

function referenceFrom(timings: ToolTiming[]): Reference {
  const cpu = timings.map((timing) => timing.cpuMs).filter((value): value is number => value !== undefined);
  const rss = timings.map((timing) => timing.peakRssBytes).filter((value): value is number => value !== undefined);
  return {
    wallMs: median(timings.map((timing) => timing.wallMs)),
    ...(cpu.length > 0 ? { cpuMs: median(cpu) } : {}),
    ...(rss.length > 0 ? { peakRssBytes: Math.max(...rss) } : {}),
  };
}

async function benchVerity(context: BenchContext, workDir: string, runs: number) {
  const dataFile = path.join(workDir, 'verity-data.img');
  const referenceHashFile = path.join(workDir, 'verity-hash.veritysetup');
  const ourHashFile = path.join(workDir, 'verity-hash.qwamos');
  const salt = randomBytes(32);
  const params: HashTreeParams = { hashAlgorithm: 'sha256', dataBlockSize: 4096, hashBlockSize: 4096, salt };

  progress(`android: writing ${VERITY_DATA_BYTES / MiB} MiB of random data to ${dataFile}`);
  await writeTestFile(dataFile, VERITY_DATA_BYTES, (chunk) => randomFillSync(chunk));

  const referenceTimings: ToolTiming[] = [];
  let referenceRoot = '';
  for (let run = 0; run < runs; run++) {
    progress(`android: veritysetup format, run ${run + 1} of ${runs}`);
    await rm(referenceHashFile, { force: true });
    const timing = await runTimedTool('veritysetup', [
      'format', dataFile, referenceHashFile,
      '--no-superblock', // the tree alone, as images/verity.ts computes it
      '--format=1',
      '--hash=sha256',
      '--data-block-size=4096',
      '--hash-block-size=4096',
      `--salt=${salt.toString('hex')}`,
    ], { workDir });
    referenceTimings.push(timing);
    referenceRoot = /Root hash:\s*([0-9a-f]+)/.exec(timing.stdout)?.[1] ?? '';
  }
  if (referenceRoot === '') throw new QwamosError('COMMAND_FAILED', 'veritysetup format printed no "Root hash:" line; check its output format');
  const referenceTree = await readFile(referenceHashFile);

  const variants: Array<{ name: string; compute: () => Promise<HashTree> }> = [
    { name: 'computeHashTree (streaming, calling thread)', compute: () => computeHashTree({ path: dataFile }, params) },
    { name: 'computeHashTreeParallel, 1 worker', compute: () => computeHashTreeParallel({ path: dataFile }, params, { workers: 1 }) },
    { name: 'computeHashTreeParallel, 2 workers', compute: () => computeHashTreeParallel({ path: dataFile }, params, { workers: 2 }) },
  ];

  const results: VerityVariant[] = [];
  for (const variant of variants) {
    const timings: InProcessTiming<HashTree>[] = [];
    for (let run = 0; run < runs; run++) {
      progress(`android: ${variant.name}, run ${run + 1} of ${runs}`);
      // Writing the tree to a file too, as veritysetup does.
      timings.push(await measureInProcess(async () => {
        const tree = await variant.compute();
        await writeFile(ourHashFile, tree.tree);
        return tree;
      }));
    }
    const last = timings.at(-1)!.result;
    results.push({
      name: variant.name,
      wallMs: median(timings.map((timing) => timing.wallMs)),
      cpuMs: median(timings.map((timing) => timing.cpuMs)),
      peakRssBytes: Math.max(...timings.map((timing) => timing.peakRssBytes)),
      rssGrowthBytes: Math.max(...timings.map((timing) => timing.peakRssBytes - timing.startRssBytes)),
      rootDigest: last.rootDigest.toString('hex'),
      treeMatches: last.tree.equals(referenceTree),
    });
  }

  await rm(dataFile, { force: true });
  return { reference: { ...referenceFrom(referenceTimings), rootDigest: referenceRoot }, variants: results };
}

/** Returns descriptors like those of the host build's vbmeta: two hash descriptors and a kernel command line. */
function vbmetaDescriptors(): AvbDescriptor[] {
  const hash = (partitionName: string, imageSize: number): AvbDescriptor => ({
    kind: 'hash', imageSize, hashAlgorithm: 'sha256', partitionName, salt: randomBytes(32), digest: randomBytes(32), flags: 0,
  });
  return [hash('kernel', 4 * MiB), hash('initramfs', 1300 * 1024), { kind: 'kernel_cmdline', flags: 0, kernelCmdline: 'console=ttyAMA0 dm-mod.waitfor=/dev/vda' }];
}

async function benchVbmeta(runs: number) {
  const rows: Array<{ algorithm: string; signMs: number; verifyMs: number; bytes: number }> = [];
  for (const { algorithm, file } of AVB_KEYS) {
    progress(`android: vbmeta ${algorithm}, ${runs} runs`);
    const keyPath = path.join(AVB_TEST_KEYS_DIR, file);
    const pem = await readFile(keyPath, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
      throw new QwamosError('INPUT_NOT_FOUND', `AVB test key ${keyPath} not found; the vbmeta benchmark signs with AOSP's libavb test keys, so put testkey_rsa2048.pem, testkey_rsa4096.pem and testkey_rsa8192.pem there or run --only another group`);
    });
    const key = loadAvbKey(pem, file);
    const expectedPublicKey = encodeAvbPublicKey(key);
    const options = { algorithm, key, rollbackIndex: 0, rollbackIndexLocation: 0, descriptors: vbmetaDescriptors() };
    const blob = buildVbmeta(options);
    verifyVbmeta(blob, { expectedPublicKey });
    rows.push({
      algorithm,
      signMs: await medianMs(runs, () => buildVbmeta(options)),
      verifyMs: await medianMs(runs, () => verifyVbmeta(blob, { expectedPublicKey })),
      bytes: blob.length,
    });
  }
  return rows;
}

async function benchSparse(workDir: string, runs: number) {
  const raw = path.join(workDir, 'sparse-raw.img');
  const ours = path.join(workDir, 'sparse.qwamos.simg');
  const reference = path.join(workDir, 'sparse.img2simg.simg');
  const expandedOurs = path.join(workDir, 'expanded.qwamos.img');
  const expandedReference = path.join(workDir, 'expanded.simg2img.img');

  progress(`android: writing a ${SPARSE_RAW_BYTES / MiB} MiB raw image, alternating ${SPARSE_RUN_BYTES / MiB} MiB of random data and zeros`);
  await writeTestFile(raw, SPARSE_RAW_BYTES, (chunk, offset) => {
    for (let start = 0; start < chunk.length; start += SPARSE_RUN_BYTES) {
      const run = chunk.subarray(start, start + SPARSE_RUN_BYTES);
      if (Math.floor((offset + start) / SPARSE_RUN_BYTES) % 2 === 0) randomFillSync(run);
      else run.fill(0);
    }
  });
  const rawDigest = await sha256File(raw);

  const write = { ours: [] as number[], reference: [] as ToolTiming[], referenceFsync: [] as number[] };
  const expand = { ours: [] as number[], reference: [] as ToolTiming[], referenceFsync: [] as number[] };
  for (let run = 0; run < runs; run++) {
    progress(`android: sparse write and expand, run ${run + 1} of ${runs}`);
    for (const file of [ours, reference, expandedOurs, expandedReference]) await rm(file, { force: true });

    write.ours.push((await measureInProcess(() => writeSparseImage(raw, ours))).wallMs);
    write.reference.push(await runTimedTool('img2simg', [raw, reference], { workDir }));
    write.referenceFsync.push((await measureInProcess(() => fsyncFile(reference))).wallMs);

    expand.ours.push((await measureInProcess(() => unsparseImages([ours], expandedOurs))).wallMs);
    expand.reference.push(await runTimedTool('simg2img', [reference, expandedReference], { workDir }));
    expand.referenceFsync.push((await measureInProcess(() => fsyncFile(expandedReference))).wallMs);
  }

  const identical = (await sha256File(ours)) === (await sha256File(reference));
  const expandedOk = (await sha256File(expandedOurs)) === rawDigest && (await sha256File(expandedReference)) === rawDigest;
  const sparseBytes = (await stat(ours)).size;
  for (const file of [raw, ours, reference, expandedOurs, expandedReference]) await rm(file, { force: true });

  const summarize = (side: typeof write) => {
    const reference = referenceFrom(side.reference);
    return { oursMs: median(side.ours), referenceMs: reference.wallMs, referenceWithFsyncMs: median(side.reference.map((timing, index) => timing.wallMs + side.referenceFsync[index]!)) };
  };
  return { sparseBytes, identical, expandedOk, write: summarize(write), expand: summarize(expand) };
}

export async function benchAndroid(context: BenchContext): Promise<GroupResult> {
  const workDir = await temporaryFolder(context, 'android');
  const largeRuns = Math.min(context.runs, LARGE_FILE_RUNS);

  const verity = await benchVerity(context, workDir, largeRuns);
  const vbmeta = await benchVbmeta(context.runs);
  const sparse = await benchSparse(workDir, largeRuns);

  const reference = verity.reference;
  const digestsEqual = verity.variants.every((variant) => variant.rootDigest === reference.rootDigest);
  return {
    id: 'android',
    title: 'Android formats',
    notes: [`Large files live in ${os.tmpdir()} and are removed afterwards.`],
    tables: [
      {
        title: `dm-verity hash tree over ${VERITY_DATA_BYTES / MiB} MiB of random data (sha256, 4 KiB blocks, 32-byte salt)`,
        header: ['tool', 'wall', 'CPU', 'peak RSS', 'time / veritysetup', 'root digest'],
        rows: [
          ['veritysetup format', formatMs(reference.wallMs), formatMs(reference.cpuMs), formatMiB(reference.peakRssBytes), '1.00x', reference.rootDigest.slice(0, 16)],
          ...verity.variants.map((variant) => [
            variant.name, formatMs(variant.wallMs), formatMs(variant.cpuMs), `${formatMiB(variant.peakRssBytes)} (+${formatMiB(variant.rssGrowthBytes)})`,
            formatRatio(variant.wallMs, reference.wallMs), variant.rootDigest.slice(0, 16),
          ]),
        ],
        notes: [
          `Median of ${largeRuns} runs; the data file is in the page cache for all of them. Root digests ${digestsEqual ? 'are equal' : 'DIFFER'} and the trees ${verity.variants.every((variant) => variant.treeMatches) ? 'are byte-identical to' : 'DIFFER from'} veritysetup's hash file.`,
          'The qwamos-build rows run in this process and include writing the tree to a file, as veritysetup does; CPU is process.cpuUsage() (all threads). Peak RSS is the whole benchmark process sampled every 10 ms, with the growth during the run in brackets.',
          hasGnuTime() ? 'veritysetup CPU and peak RSS come from GNU time (/usr/bin/time).' : 'GNU time (/usr/bin/time) is not installed, so veritysetup has no CPU or RSS figures; install the Debian package time.',
          'A ratio below 1.00x means faster than veritysetup.',
        ],
      },
      {
        title: 'vbmeta signing and verification (AOSP test keys)',
        header: ['algorithm', 'vbmeta size', 'buildVbmeta (sign)', 'verifyVbmeta'],
        rows: vbmeta.map((row) => [row.algorithm, `${row.bytes} B`, formatMs(row.signMs), formatMs(row.verifyMs)]),
        notes: [
          `Median of ${context.runs} runs. The vbmeta has two hash descriptors and a kernel command line, like the host build's; partition images are not hashed here. There is no reference: Debian 12 packages no avbtool.`,
        ],
      },
      {
        title: `Sparse images: ${SPARSE_RAW_BYTES / MiB} MiB raw image, half random, half zeros`,
        header: ['operation', 'qwamos-build', 'reference', 'reference + fsync', 'time / (reference + fsync)'],
        rows: [
          ['raw to sparse (writeSparseImage / img2simg)', formatMs(sparse.write.oursMs), formatMs(sparse.write.referenceMs), formatMs(sparse.write.referenceWithFsyncMs), formatRatio(sparse.write.oursMs, sparse.write.referenceWithFsyncMs)],
          ['sparse to raw (unsparseImages / simg2img)', formatMs(sparse.expand.oursMs), formatMs(sparse.expand.referenceMs), formatMs(sparse.expand.referenceWithFsyncMs), formatRatio(sparse.expand.oursMs, sparse.expand.referenceWithFsyncMs)],
        ],
        notes: [
          `Median of ${largeRuns} runs. The sparse image is ${formatMiB(sparse.sparseBytes)}; it is ${sparse.identical ? 'byte-identical to' : 'DIFFERENT from'} img2simg's, and both expanded images ${sparse.expandedOk ? 'equal' : 'DO NOT equal'} the raw image.`,
          'qwamos-build writes through a temporary file, fsync and rename; img2simg and simg2img do not fsync, so the "reference + fsync" column adds an fsync of their output for a like-for-like comparison.',
        ],
      },
    ],
    data: { verity: { ...verity, runs: largeRuns }, vbmeta, sparse: { ...sparse, runs: largeRuns } },
  };
}
