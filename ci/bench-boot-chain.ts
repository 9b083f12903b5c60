/**
 * Benchmark group boot-chain: ML-DSA-87 signing and verification of each
 * stage of a real build output on the host (TypeScript and the C verifier),
 * and the verifier's run time inside the QEMU guest.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { QwamosError } from '../core/errors.js';
import { REPO_ROOT } from '../core/schema.js';
import { runBootTest, type BootTestResult } from '../deploy/boot-test.js';
import type { UnsignedManifest } from '../signing/manifest.js';
import { hashImage } from '../signing/manifest-image.js';
import { parseManifest } from '../signing/manifest-parse.js';
import { signManifest } from '../signing/manifest-sign.js';
import { verifyStage } from '../signing/manifest-verify.js';
import { localMldsaSigner, mldsaKeyPairFromSeed, mldsaSign, mldsaVerify } from '../signing/mldsa.js';
import { decodeMlDsa87Spki, pemDecode } from '../signing/keys-pkcs8.js';
import { buildVerifier } from '../signing/verifier-build.js';
import {
  type BenchContext, type GroupResult, formatMs, median, medianMs, progress, runTimedTool, temporaryFolder,
} from './bench-measure.js';

/** The build output used when the host-build group did not run and --build-dir is not given. */
export const DEFAULT_BUILD_DIR = path.join(REPO_ROOT, 'out', 'qemu-virt-arm64');

/** Seconds one guest boot may take. Under TCG the host image boots in about 2 s on a 2-core Xeon. */
const BOOT_TIMEOUT_SECONDS = 120;

/** The stage list of build.json (its `chain` section). */
interface ChainRecord {
  deviceProfile: string;
  stages: { stage: string; manifest: string; image: string; signer: string; verity?: boolean }[];
  keys: Record<string, string>;
}

interface StageTimes {
  stage: string;
  imageBytes: number;
  hashMs: number;
  signMs: number;
  verifyTsMs: number;
  verifyTsVerityOnlyMs?: number;
  verifyCMs: number;
  verifyCVerityOnlyMs?: number;
}

async function readChain(buildDir: string): Promise<ChainRecord> {
  const file = path.join(buildDir, 'build.json');
  if (!existsSync(file)) {
    throw new QwamosError('INPUT_NOT_FOUND', `${file} not found; build the host image first with 'node bin/qwamos-build.js build', or pass --build-dir DIR`);
  }
  const record = JSON.parse(await readFile(file, 'utf8')) as { chain?: ChainRecord };
  if (!record.chain) throw new QwamosError('INPUT_INVALID', `${file} has no chain section; rebuild the host image with the current qwamos-build`);
  return record.chain;
}

/** Reads a published PEM public key and writes its raw ML-DSA-87 bytes beside the copy, for qwamos-verify --pubkey. */
async function rawPublicKey(buildDir: string, keyFile: string): Promise<{ raw: Uint8Array; rawPath: string }> {
  const raw = decodeMlDsa87Spki(pemDecode(await readFile(path.join(buildDir, keyFile), 'utf8')).der);
  const rawPath = path.join(buildDir, `${keyFile}.raw`);
  await writeFile(rawPath, raw);
  return { raw, rawPath };
}

/** Returns the unsigned content of a published manifest, for signing it again with the benchmark key. */
function unsignedFrom(manifestBytes: Uint8Array): UnsignedManifest {
  const parsed = parseManifest(manifestBytes);
  return {
    stage: parsed.stage,
    deviceProfile: parsed.deviceProfile,
    imageSize: parsed.imageSize,
    imageSha512: parsed.imageSha512,
    ...(parsed.verity ? { verity: parsed.verity } : {}),
    rollbackIndexLocation: parsed.rollbackIndexLocation,
    rollbackIndex: parsed.rollbackIndex,
    nextStageKeyIds: parsed.nextStageKeyIds,
  };
}

async function benchStage(buildDir: string, chain: ChainRecord, entry: ChainRecord['stages'][number], verifier: string, context: BenchContext, workDir: string): Promise<StageTimes> {
  const runs = context.runs;
  const imagePath = path.join(buildDir, entry.image);
  const manifestPath = path.join(buildDir, entry.manifest);
  const manifestBytes = await readFile(manifestPath);
  const signerKey = chain.keys[entry.signer];
  if (signerKey === undefined) throw new QwamosError('INPUT_INVALID', `build.json names signer '${entry.signer}' for stage ${entry.stage} but lists no key file for it`);
  const publicKey = await rawPublicKey(buildDir, signerKey);

  // Keys made for this run sign, because the build's dev keys are encrypted in its cache. Each
  // run signs with another key: ML-DSA signing repeats its rejection loop a number of times
  // that depends on the key and message, so one key would give one fixed time.
  const benchKeys = Array.from({ length: runs + 1 }, () => mldsaKeyPairFromSeed(randomBytes(32)));
  let nextKey = 0;
  const unsigned = unsignedFrom(manifestBytes);

  const imageBytes = Number((await hashImage(imagePath)).imageSize);
  const hashMs = await medianMs(runs, () => hashImage(imagePath));
  const signMs = await medianMs(runs, () => {
    const key = benchKeys[nextKey++ % benchKeys.length]!;
    return signManifest(unsigned, localMldsaSigner(key.secretKey), key.publicKey);
  });

  const trust = { stage: entry.stage, publicKeys: [publicKey.raw], deviceProfile: chain.deviceProfile, imagePath };
  const verifyTsMs = await medianMs(runs, () => verifyStage(manifestBytes, trust));
  const verifyTsVerityOnlyMs = entry.verity ? await medianMs(runs, () => verifyStage(manifestBytes, { ...trust, verityOnly: true })) : undefined;

  const cArgs = ['--stage', entry.stage, '--manifest', manifestPath, '--image', imagePath, '--pubkey', publicKey.rawPath, '--no-counters', '--device-profile', chain.deviceProfile];
  const verifyCMs = await medianToolMs(runs, verifier, cArgs, workDir);
  const verifyCVerityOnlyMs = entry.verity ? await medianToolMs(runs, verifier, [...cArgs, '--verity-only'], workDir) : undefined;

  return {
    stage: entry.stage, imageBytes, hashMs, signMs, verifyTsMs, verifyCMs,
    ...(verifyTsVerityOnlyMs === undefined ? {} : { verifyTsVerityOnlyMs }),
    ...(verifyCVerityOnlyMs === undefined ? {} : { verifyCVerityOnlyMs }),
  };
}

/** Returns the median wall time of `runs` runs of a host program, after one untimed run. */
async function medianToolMs(runs: number, command: string, args: string[], workDir: string): Promise<number> {
  await runTimedTool(command, args, { workDir });
  const times: number[] = [];
  for (let run = 0; run < runs; run++) times.push((await runTimedTool(command, args, { workDir })).wallMs);
  return median(times);
}

/** Measures the ML-DSA-87 primitives on manifest-sized messages, a new random message each run. */
async function benchPrimitives(runs: number): Promise<{ signMs: number; verifyMs: number }> {
  const key = mldsaKeyPairFromSeed(randomBytes(32));
  const context = Buffer.from('qwamos/stage-manifest/v1/bench', 'latin1');
  const messages = Array.from({ length: runs + 1 }, () => randomBytes(400));
  const signatures = messages.map((message) => mldsaSign(key.secretKey, message, context));
  let nextSign = 0;
  let nextVerify = 0;
  return {
    signMs: await medianMs(runs, () => mldsaSign(key.secretKey, messages[nextSign++ % messages.length]!, context)),
    verifyMs: await medianMs(runs, () => {
      const index = nextVerify++ % messages.length;
      return mldsaVerify(key.publicKey, messages[index]!, signatures[index]!, context);
    }),
  };
}

const KVM_LINE = /qwamos-init: \/dev\/kvm present/;
const VERIFIED_LINE = /qwamos: verified system: /;
const PRINTK_TIME = /^\[\s*(\d+\.\d+)\]/;

interface GuestRun {
  /** Host receive time of the "verified system" line minus that of the "/dev/kvm present" line. */
  kvmToVerifiedMs: number;
  /** The boot test's own markers: kvm to system mounted. */
  kvmToSystemMs: number;
  bootMs: number;
  accelerator: string;
  printkTimestamps: boolean;
}

/** Boots the build once and times the verifier from the console lines around it. */
async function bootOnce(buildDir: string): Promise<GuestRun> {
  const arrivals: { line: string; atMs: number }[] = [];
  const result: BootTestResult = await runBootTest(buildDir, {
    timeoutSeconds: BOOT_TIMEOUT_SECONDS,
    onLine: (line) => arrivals.push({ line, atMs: performance.now() }),
  });
  if (!result.passed) {
    throw new QwamosError('BOOT_TEST_FAILED', `the boot of ${buildDir} failed (${result.failure?.line ?? 'no reason'}); see ${result.logFile}`, { details: result.lastLines });
  }

  const kvm = arrivals.find((entry) => KVM_LINE.test(entry.line));
  const verified = arrivals.find((entry) => VERIFIED_LINE.test(entry.line));
  if (!kvm || !verified) throw new QwamosError('BOOT_TEST_FAILED', `the console log ${result.logFile} lacks the '/dev/kvm present' or 'verified system' line; the init script changed, so update ci/bench-boot-chain.ts`);

  const markerAt = (id: string): number => result.markers.find((marker) => marker.id === id)!.atMs;
  return {
    kvmToVerifiedMs: verified.atMs - kvm.atMs,
    kvmToSystemMs: markerAt('system') - markerAt('kvm'),
    bootMs: result.bootTimeMs ?? Number.NaN,
    accelerator: result.accelerator,
    printkTimestamps: PRINTK_TIME.test(kvm.line) && PRINTK_TIME.test(verified.line),
  };
}

export async function benchBootChain(context: BenchContext, buildDirOption: string | undefined): Promise<GroupResult> {
  const source = buildDirOption ?? context.buildOutputDir ?? DEFAULT_BUILD_DIR;
  const chain = await readChain(source);
  const workDir = await temporaryFolder(context, 'boot-chain');
  const buildDir = path.join(workDir, 'build');
  // A copy, so that boot-test's logs and counter store stay out of the original folder.
  await cp(source, buildDir, { recursive: true });
  await rm(path.join(buildDir, 'logs'), { recursive: true, force: true });

  progress('boot-chain: building the host C verifier');
  const verifier = await buildVerifier({ target: 'host', outDir: path.join(workDir, 'verifier'), logFile: path.join(workDir, 'verifier.log') });
  const spawnMs = await medianToolMs(context.runs, verifier, ['--help'], workDir);

  const stages: StageTimes[] = [];
  for (const entry of chain.stages) {
    progress(`boot-chain: stage ${entry.stage}: sign and verify, ${context.runs} runs each`);
    stages.push(await benchStage(buildDir, chain, entry, verifier, context, workDir));
  }
  const primitives = await benchPrimitives(context.runs);

  const guestRuns: GuestRun[] = [];
  for (let run = 0; run < context.runs; run++) {
    progress(`boot-chain: guest boot ${run + 1} of ${context.runs}`);
    guestRuns.push(await bootOnce(buildDir));
  }
  const printk = guestRuns.every((run) => run.printkTimestamps);
  const accelerators = [...new Set(guestRuns.map((run) => run.accelerator))].join(', ');

  const optional = (ms: number | undefined): string => (ms === undefined ? '-' : formatMs(ms));
  return {
    id: 'boot-chain',
    title: 'Verified boot chain',
    notes: [
      `Build output: ${context.buildOutputDir === source ? 'the output folder of the host-build group\'s cold build in this run' : path.relative(process.cwd(), source) || source}. Every figure is the median of ${context.runs} runs.`,
    ],
    tables: [
      {
        title: 'Host: sign and verify per stage',
        header: ['stage', 'image', 'SHA-512 of image', 'signManifest', 'sign total', 'verify (TS)', 'verify (TS, verity only)', 'verify (C)', 'verify (C, verity only)'],
        rows: stages.map((times) => [
          times.stage,
          `${(times.imageBytes / 1024).toFixed(0)} KiB`,
          formatMs(times.hashMs),
          formatMs(times.signMs),
          formatMs(times.hashMs + times.signMs),
          formatMs(times.verifyTsMs),
          optional(times.verifyTsVerityOnlyMs),
          formatMs(times.verifyCMs),
          optional(times.verifyCVerityOnlyMs),
        ]),
        notes: [
          'Signing uses a fresh ML-DSA-87 key per run with the published manifest\'s fields (signing/manifest-sign.ts signManifest, which also verifies the new signature once); "sign total" adds the SHA-512 of the image that the build computes for the manifest.',
          'Verification checks the published manifests with the published public keys: signing/manifest-verify.ts verifyStage, and qwamos-verify built for the host (static, -O2) with --no-counters. Without --verity-only both hash the whole image with SHA-512; the system stage also checks the dm-verity root block.',
          `The C times are the wall time of one process each; starting qwamos-verify --help alone takes ${formatMs(spawnMs)}.`,
        ],
      },
      {
        title: 'ML-DSA-87 primitives (@noble/post-quantum, a new random 400-byte message per run)',
        header: ['operation', 'time'],
        rows: [['sign', formatMs(primitives.signMs)], ['verify', formatMs(primitives.verifyMs)]],
        notes: [],
      },
      {
        title: 'Guest: system-stage verification during boot (QEMU)',
        header: ['measure', 'median', 'min', 'max'],
        rows: [
          ['"/dev/kvm present" to "verified system"', ...summary(guestRuns.map((run) => run.kvmToVerifiedMs))],
          ['kvm marker to system-mounted marker', ...summary(guestRuns.map((run) => run.kvmToSystemMs))],
          ['boot to runtime marker', ...summary(guestRuns.map((run) => run.bootMs))],
        ],
        notes: [
          printk
            ? 'Method: printk timestamps of the console lines.'
            : 'Method: the init\'s console lines carry no printk timestamps (they are written by the init, not by printk), so the times are the host\'s receive times of the serial lines. The first row brackets the init\'s command-line parsing and the qwamos-verify run (--verity-only, ML-DSA-87 signature, counter store); the second adds the dm-verity EROFS mount.',
          `Accelerator: ${accelerators}. Under TCG QEMU emulates the arm64 CPU in software, so these guest times do not predict times on a phone.`,
        ],
      },
    ],
    data: { buildDir: source, spawnMs, stages, primitives, guest: { method: printk ? 'printk' : 'host-receive-time', runs: guestRuns } },
  };
}

function summary(values: number[]): string[] {
  return [formatMs(median(values)), formatMs(Math.min(...values)), formatMs(Math.max(...values))];
}
