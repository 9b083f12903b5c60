import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../cli/main.js';
import { QwamosError } from '../../core/errors.js';
import { runTool } from '../../core/exec.js';
import { gzipDeterministic } from '../../images/compress.js';
import { writeCpio } from '../../images/cpio.js';
import { formatDmModCreate } from '../../images/verity-dm.js';
import { appendHashTree, type VerityImage } from '../../images/verity-image.js';
import type { AvbHashDescriptor } from '../../signing/avb-descriptors.js';
import { encodeAvbPublicKey } from '../../signing/avb-key.js';
import { buildVbmeta } from '../../signing/avb-vbmeta.js';
import { issueCertificate, type CertifiedPurpose } from '../../signing/keys-cert.js';
import { pemEncode, spkiDer } from '../../signing/keys-pkcs8.js';
import { MANIFEST_HEADER_SIZE, MANIFEST_MAX_SIZE, OFFSET, type UnsignedManifest } from '../../signing/manifest.js';
import { createCounterStore } from '../../signing/manifest-counters.js';
import { hashImage } from '../../signing/manifest-image.js';
import { signManifest } from '../../signing/manifest-sign.js';
import { localMldsaSigner, mldsaKeyId, type MldsaKeyPair } from '../../signing/mldsa.js';
import { verifyBuildOutput, type StageRow, type VerifyBuildResult } from '../../signing/verify-build.js';
import { testKey } from './avb-fixtures.js';
import { deterministicBytes, testKeyPair } from '../verifier/fixtures.js';

const DEVICE = 'qemu-virt-arm64';
const MTIME = 1_700_000_000;
const EMBEDDED_KEY_PATH = 'etc/qwamos/keys/system-stage.pub';

const ROOT = testKeyPair('verify-build root');
const SYSTEM = testKeyPair('verify-build system-stage');
const GUEST = testKeyPair('verify-build guest-stage');
const ATTACKER_ROOT = testKeyPair('verify-build attacker root');

const CHAIN = {
  formatVersion: 1,
  deviceProfile: DEVICE,
  vbmeta: { image: 'vbmeta.img', publicKey: 'keys/avb_pubkey.bin', partitions: { kernel: 'Image', initramfs: 'initramfs.cpio.gz' } },
  stages: [
    { stage: 'kernel', manifest: 'kernel.manifest', image: 'Image', signer: 'root' },
    { stage: 'initramfs', manifest: 'initramfs.manifest', image: 'initramfs.cpio.gz', signer: 'root', embeddedPublicKey: EMBEDDED_KEY_PATH },
    { stage: 'system', manifest: 'system.manifest', manifestPartition: 'system-manifest.img', image: 'system.img', signer: 'system-stage', verity: true },
  ],
  keys: {
    root: 'keys/root.pub',
    'system-stage': 'keys/system-stage.pub',
    'guest-stage': 'keys/guest-stage.pub',
    'system-stage-certificate': 'keys/system-stage.cert',
    'guest-stage-certificate': 'keys/guest-stage.cert',
  },
};

interface FixtureOptions {
  /** Root key that signs stage 0 and the certificates. */
  root?: MldsaKeyPair;
  kernelSigner?: MldsaKeyPair;
  systemSigner?: MldsaKeyPair;
  /** Raw key written into the initramfs in place of the system-stage key. */
  embeddedKey?: Uint8Array;
  /** Rollback index of the stage 0 manifests and the vbmeta (location 0). */
  stage0Index?: bigint;
  /** Rollback index of the system manifest (location 1). */
  systemIndex?: bigint;
  /** Leaves `vbmeta` out of the chain and writes no vbmeta image. */
  withoutVbmeta?: boolean;
  /** Changes the kernel command line signed into the vbmeta. */
  editVbmetaCmdline?: (cmdline: string) => string;
  /**
   * Writes the phone build layout: no certificates, embedded key or
   * manifest partition in the chain, no boot.json or verity.json, and
   * bytes after the system image's hash tree where an AVB footer goes.
   */
  phoneLayout?: boolean;
}

interface Fixture {
  dir: string;
  verity: VerityImage;
  /** Bytes of system.img covered by data blocks, the tree follows. */
  dataSize: number;
}

let scratch: string;
let counter = 0;
let good: Fixture;

async function newFolder(name: string): Promise<string> {
  counter += 1;
  const folder = path.join(scratch, `${counter}-${name}`);
  await mkdir(folder, { recursive: true });
  return folder;
}

function keyIdHex(keyPair: MldsaKeyPair): string {
  return mldsaKeyId(keyPair.publicKey).toString('hex');
}

function publicKeyPem(keyPair: MldsaKeyPair): string {
  return pemEncode('PUBLIC KEY', spkiDer(keyPair.publicKey));
}

function certificate(purpose: CertifiedPurpose, subject: MldsaKeyPair, root: MldsaKeyPair): Uint8Array {
  return issueCertificate({ purpose, dev: true, subjectKeyId: keyIdHex(subject), issuerKeyId: keyIdHex(root), notBefore: MTIME, notAfter: MTIME + 86_400 * 3650 }, root.secretKey);
}

function initramfs(embeddedKey: Uint8Array): Buffer {
  return gzipDeterministic(writeCpio([
    { path: 'init', type: 'file', mode: 0o755, data: '#!/bin/sh\nexec /bin/qwamos-verify\n' },
    { path: EMBEDDED_KEY_PATH, type: 'file', mode: 0o644, data: embeddedKey },
  ], { mtime: MTIME }));
}

async function signStage(file: string, fields: Omit<UnsignedManifest, 'deviceProfile' | 'imageSize' | 'imageSha512'>, image: string, signer: MldsaKeyPair): Promise<Buffer> {
  const manifest = await signManifest({ ...fields, deviceProfile: DEVICE, ...(await hashImage(image)) }, localMldsaSigner(signer.secretKey), signer.publicKey);
  await writeFile(file, manifest);
  return manifest;
}

/** Returns a hash descriptor over the whole file, as avbtool add_hash_footer --do_not_append_vbmeta_image writes it. */
async function hashDescriptor(partitionName: string, file: string): Promise<AvbHashDescriptor> {
  const image = await readFile(file);
  const salt = createHash('sha256').update(`salt ${partitionName}`).digest();
  const digest = createHash('sha256').update(salt).update(image).digest();
  return { kind: 'hash', imageSize: image.length, hashAlgorithm: 'sha256', partitionName, salt, digest, flags: 0 };
}

/** Writes a signed build output folder with the layout `qwamos-build build` produces. */
async function writeBuildOutput(dir: string, options: FixtureOptions = {}): Promise<Fixture> {
  const root = options.root ?? ROOT;
  const file = (name: string): string => path.join(dir, name);
  await mkdir(file('keys'), { recursive: true });

  await writeFile(file('keys/root.pub'), publicKeyPem(root));
  await writeFile(file('keys/system-stage.pub'), publicKeyPem(SYSTEM));
  await writeFile(file('keys/guest-stage.pub'), publicKeyPem(GUEST));
  await writeFile(file('keys/system-stage.cert'), certificate('system-stage', SYSTEM, root));
  await writeFile(file('keys/guest-stage.cert'), certificate('guest-stage', GUEST, root));

  await writeFile(file('Image'), deterministicBytes(70_001, 'verify-build kernel'));
  await writeFile(file('initramfs.cpio.gz'), initramfs(options.embeddedKey ?? SYSTEM.publicKey));
  const dataSize = 17 * 4096;
  await writeFile(file('system.img'), deterministicBytes(dataSize - 3000, 'verify-build system'));
  const verity = await appendHashTree(file('system.img'), { hashAlgorithm: 'sha256', saltLabel: 'system' });

  await writeFile(file('verity.json'), JSON.stringify({
    rootDigest: verity.rootDigest.toString('hex'),
    salt: verity.salt.toString('hex'),
    hashAlgorithm: verity.hashAlgorithm,
    dataBlockSize: verity.dataBlockSize,
    hashBlockSize: verity.hashBlockSize,
    dataBlocks: verity.dataBlocks,
    hashOffset: verity.hashOffset,
    treeSize: verity.treeSize,
  }, null, 2));
  const cmdline = `console=ttyAMA0 ${formatDmModCreate(verity, { name: 'system', dataDevice: '/dev/vda' })} dm-mod.waitfor=/dev/vda qwamos.device=${DEVICE} panic=-1`;
  await writeFile(file('boot.json'), JSON.stringify({
    formatVersion: 1,
    device: DEVICE,
    arch: 'arm64',
    kernel: 'Image',
    initramfs: 'initramfs.cpio.gz',
    cmdline,
    disks: [
      { file: 'system.img', device: 'virtio-blk-device', readOnly: true },
      { file: 'system-manifest.img', device: 'virtio-blk-device', readOnly: true },
    ],
    qemu: { binary: 'qemu-system-aarch64', machine: 'virt', cpu: 'max', memoryMiB: 512 },
  }, null, 2));

  const stage0Index = options.stage0Index ?? 3n;
  await signStage(file('kernel.manifest'), { stage: 'kernel', rollbackIndexLocation: 0, rollbackIndex: stage0Index, nextStageKeyIds: [] }, file('Image'), options.kernelSigner ?? root);
  await signStage(file('initramfs.manifest'), { stage: 'initramfs', rollbackIndexLocation: 0, rollbackIndex: stage0Index, nextStageKeyIds: [mldsaKeyId(SYSTEM.publicKey)] }, file('initramfs.cpio.gz'), root);
  const systemManifest = await signStage(file('system.manifest'), {
    stage: 'system',
    rollbackIndexLocation: 1,
    rollbackIndex: options.systemIndex ?? 7n,
    nextStageKeyIds: [mldsaKeyId(GUEST.publicKey)],
    verity: {
      hashAlgorithm: 'sha256',
      dataBlockSize: verity.dataBlockSize,
      hashBlockSize: verity.hashBlockSize,
      dataBlockCount: BigInt(verity.dataBlocks),
      hashTreeOffset: BigInt(verity.hashOffset),
      rootDigest: verity.rootDigest,
      salt: verity.salt,
    },
  }, file('system.img'), options.systemSigner ?? SYSTEM);
  await writeFile(file('system-manifest.img'), Buffer.concat([systemManifest, Buffer.alloc(MANIFEST_MAX_SIZE - systemManifest.length)]));

  const chain: Record<string, unknown> = { ...CHAIN };
  if (options.withoutVbmeta) {
    delete chain.vbmeta;
  } else {
    const avbKey = await testKey(4096);
    await writeFile(file('keys/avb_pubkey.bin'), encodeAvbPublicKey(avbKey));
    await writeFile(file('vbmeta.img'), buildVbmeta({
      algorithm: 'SHA256_RSA4096',
      key: avbKey,
      rollbackIndex: stage0Index,
      rollbackIndexLocation: 0,
      descriptors: [await hashDescriptor('kernel', file('Image')), await hashDescriptor('initramfs', file('initramfs.cpio.gz'))],
      kernelCmdlines: [options.editVbmetaCmdline ? options.editVbmetaCmdline(cmdline) : cmdline],
    }));
  }

  if (options.phoneLayout) {
    chain.keys = { root: CHAIN.keys.root, 'system-stage': CHAIN.keys['system-stage'], 'guest-stage': CHAIN.keys['guest-stage'] };
    chain.stages = CHAIN.stages.map(({ embeddedPublicKey: _key, manifestPartition: _partition, ...stage }) => stage);
    for (const name of ['boot.json', 'verity.json', 'system-manifest.img', 'keys/system-stage.cert', 'keys/guest-stage.cert']) await rm(file(name));
    await writeFile(file('system.img'), Buffer.concat([await readFile(file('system.img')), deterministicBytes(4096, 'AVB footer area')]));
  }

  await writeFile(file('build.json'), JSON.stringify({ formatVersion: 1, device: DEVICE, recipe: 'recipes/host.yaml', sourceDateEpoch: MTIME, outputs: [], chain }, null, 2));
  return { dir, verity, dataSize };
}

/** Copies the good folder, so that one case can change it. */
async function copyOfGood(name: string): Promise<string> {
  const copy = await newFolder(name);
  await cp(good.dir, copy, { recursive: true });
  return copy;
}

async function flipByte(file: string, offset: number): Promise<void> {
  const bytes = await readFile(file);
  bytes[offset] = bytes[offset]! ^ 0x01;
  await writeFile(file, bytes);
}

function failedStages(result: VerifyBuildResult): string[] {
  return result.stages.filter((row) => row.status === 'FAIL').map((row) => row.stage);
}

function rowOf(result: VerifyBuildResult, stage: string): StageRow {
  const row = result.stages.find((candidate) => candidate.stage === stage);
  if (row === undefined) throw new Error(`no row for stage ${stage}`);
  return row;
}

function kindsOf(result: VerifyBuildResult, stage: string): string[] {
  return rowOf(result, stage).failures.map((failure) => failure.kind);
}

async function rejection(action: Promise<unknown>): Promise<QwamosError> {
  const error = await action.then(() => undefined, (caught: unknown) => caught);
  if (error instanceof QwamosError) return error;
  throw new Error(`expected a QwamosError, got ${String(error)}`);
}

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-verify-build-'));
  good = await writeBuildOutput(await newFolder('good'));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('verifyBuildOutput on a good folder', () => {
  it('passes every stage with every check', async () => {
    const result = await verifyBuildOutput(good.dir);

    expect(result.failures).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.stages.map((row) => [row.stage, row.status])).toEqual([['vbmeta', 'ok'], ['kernel', 'ok'], ['initramfs', 'ok'], ['system', 'ok']]);
    expect(rowOf(result, 'vbmeta').checks).toEqual(['vbmeta header', 'signature and descriptors', 'partitions covered', 'flags']);
    expect(rowOf(result, 'kernel').checks).toEqual(['manifest', 'signature', 'device profile', 'next-stage keys', 'image size', 'image sha512', 'boot config']);
    expect(rowOf(result, 'initramfs').checks).toEqual(['manifest', 'signature', 'device profile', 'next-stage keys', 'image size', 'image sha512', 'embedded key', 'boot config']);
    expect(rowOf(result, 'system').checks).toEqual([
      'manifest', 'signer certificate', 'signature', 'device profile', 'next-stage signer', 'next-stage keys',
      'image size', 'image sha512', 'verity root', 'verity.json', 'dm-mod.create', 'vbmeta dm-mod.create', 'manifest partition', 'boot config',
    ]);
    for (const row of result.stages) expect(row.skipped, row.stage).toEqual(['rollback (no --counters)']);
  });

  it('reports signers, rollback indexes and the trust anchor', async () => {
    const result = await verifyBuildOutput(good.dir);

    expect(rowOf(result, 'kernel')).toMatchObject({ signerKeyId: keyIdHex(ROOT), rollbackIndex: '3', rollbackIndexLocation: 0 });
    expect(rowOf(result, 'system')).toMatchObject({ signerKeyId: keyIdHex(SYSTEM), rollbackIndex: '7', rollbackIndexLocation: 1 });
    const avbBlob = await readFile(path.join(good.dir, 'keys/avb_pubkey.bin'));
    expect(rowOf(result, 'vbmeta')).toMatchObject({ signerKeyId: createHash('sha256').update(avbBlob).digest('hex'), rollbackIndex: '3', rollbackIndexLocation: 0 });
    expect(result.trustAnchor.rootKey).toEqual({ keyId: keyIdHex(ROOT), file: path.join(good.dir, 'keys/root.pub'), pinned: false });
    expect(result.rollback).toEqual({ checked: false });
  });

  it('reports the digests sha512sum and veritysetup compute', async () => {
    const result = await verifyBuildOutput(good.dir);

    for (const [stage, image] of [['kernel', 'Image'], ['initramfs', 'initramfs.cpio.gz'], ['system', 'system.img']] as const) {
      const { stdout } = await runTool('sha512sum', [path.join(good.dir, image)]);
      expect(rowOf(result, stage).imageSha512).toBe(stdout.split(' ')[0]);
    }

    const system = rowOf(result, 'system');
    const image = path.join(good.dir, 'system.img');
    const { stdout } = await runTool('veritysetup', [
      'verify', image, image, system.verityRootDigest!,
      '--no-superblock', '--format=1', '--hash=sha256',
      `--data-blocks=${good.verity.dataBlocks}`, '--data-block-size=4096', '--hash-block-size=4096',
      `--hash-offset=${good.verity.hashOffset}`, `--salt=${good.verity.salt.toString('hex')}`, '--verbose',
    ]);
    expect(stdout).toContain('Command successful');
  });

  it('extracts the same embedded key as GNU cpio', async () => {
    const target = await newFolder('cpio-extract');
    const archive = await runTool('sh', ['-c', `gunzip -c "${path.join(good.dir, 'initramfs.cpio.gz')}" | cpio -idm --quiet`], { cwd: target });
    expect(archive.stderr).toBe('');

    expect(await readFile(path.join(target, EMBEDDED_KEY_PATH))).toEqual(Buffer.from(SYSTEM.publicKey));
    expect(kindsOf(await verifyBuildOutput(good.dir), 'initramfs')).toEqual([]);
  });

  it('passes rollback checks at equal counters', async () => {
    const counters = path.join(await newFolder('counters-equal'), 'counters.img');
    const values = new Array<bigint>(32).fill(0n);
    values[0] = 3n;
    values[1] = 7n;
    await createCounterStore(counters, { counters: values });

    const result = await verifyBuildOutput(good.dir, { countersPath: counters });

    expect(result.ok).toBe(true);
    expect(result.rollback).toEqual({ checked: true, counters });
    for (const row of result.stages) expect(row.checks).toContain('rollback');
    for (const row of result.stages) expect(row.skipped).toEqual([]);
  });

  it('passes without vbmeta', async () => {
    const fixture = await writeBuildOutput(await newFolder('no-vbmeta'), { withoutVbmeta: true });

    const result = await verifyBuildOutput(fixture.dir);

    expect(result.ok).toBe(true);
    expect(result.stages.map((row) => row.stage)).toEqual(['kernel', 'initramfs', 'system']);
    expect(rowOf(result, 'system').checks).not.toContain('vbmeta dm-mod.create');
    expect(result.trustAnchor.avbKey).toBeUndefined();
  });
});

describe('verifyBuildOutput on the phone layout', () => {
  it('passes and lists the checks it skips', async () => {
    const fixture = await writeBuildOutput(await newFolder('phone'), { phoneLayout: true });

    const result = await verifyBuildOutput(fixture.dir);

    expect(result.failures).toEqual([]);
    expect(rowOf(result, 'system').checks).toEqual([
      'manifest', 'signature', 'device profile', 'next-stage signer', 'next-stage keys', 'image size', 'image sha512', 'verity root', 'vbmeta dm-mod.create',
    ]);
    expect(rowOf(result, 'system').skipped).toEqual([
      'signer certificate (build.json names no system-stage certificate)',
      'rollback (no --counters)',
      'verity.json (no verity.json in the build output)',
      'dm-mod.create (no boot.json in the build output)',
      'boot config (no boot.json in the build output)',
    ]);
    expect(rowOf(result, 'initramfs').checks).not.toContain('embedded key');
  });

  it('rejects a system manifest signed by the guest-stage key', async () => {
    const fixture = await writeBuildOutput(await newFolder('phone-guest'), { phoneLayout: true, systemSigner: GUEST });

    const result = await verifyBuildOutput(fixture.dir);

    expect(failedStages(result)).toEqual(['system']);
    expect(kindsOf(result, 'system')).toEqual(['unknown key', 'key not allowed']);
  });

  it('rejects a flipped byte in the system data', async () => {
    const fixture = await writeBuildOutput(await newFolder('phone-tamper'), { phoneLayout: true });
    await flipByte(path.join(fixture.dir, 'system.img'), 4096 * 5);

    const result = await verifyBuildOutput(fixture.dir);

    expect(failedStages(result)).toEqual(['system']);
    expect(kindsOf(result, 'system')).toEqual(['digest mismatch']);
  });
});

describe('verifyBuildOutput tamper matrix', () => {
  interface TamperCase {
    artifact: string;
    file: string;
    /** Byte range to flip in: start, middle and end. */
    range: () => Promise<[number, number]>;
    failing: string[];
    /** Failure kinds expected on the tampered stage's row, per position. */
    kinds: [string[], string[], string[]];
    stage: string;
  }

  const wholeFile = (name: string) => async (): Promise<[number, number]> => [0, (await stat(path.join(good.dir, name))).size];
  const manifestHeader = async (): Promise<[number, number]> => [0, MANIFEST_HEADER_SIZE];
  const manifestSignature = (name: string) => async (): Promise<[number, number]> => {
    const bytes = await readFile(path.join(good.dir, name));
    return [bytes.readUInt32BE(OFFSET.signedSize), bytes.length];
  };
  const headerKinds: [string[], string[], string[]] = [['bad magic'], ['unknown key'], ['invalid field']];
  const signatureKinds: [string[], string[], string[]] = [['bad signature'], ['bad signature'], ['bad signature']];

  const cases: TamperCase[] = [
    { artifact: 'kernel', file: 'Image', range: wholeFile('Image'), stage: 'kernel', failing: ['vbmeta', 'kernel'], kinds: [['digest mismatch'], ['digest mismatch'], ['digest mismatch']] },
    { artifact: 'initramfs', file: 'initramfs.cpio.gz', range: wholeFile('initramfs.cpio.gz'), stage: 'initramfs', failing: ['vbmeta', 'initramfs'], kinds: [['digest mismatch', 'initramfs invalid'], ['digest mismatch', 'initramfs invalid'], ['digest mismatch', 'initramfs invalid']] },
    { artifact: 'system data', file: 'system.img', range: async () => [0, good.dataSize], stage: 'system', failing: ['system'], kinds: [['digest mismatch'], ['digest mismatch'], ['digest mismatch']] },
    { artifact: 'hashtree', file: 'system.img', range: async () => [good.verity.hashOffset, good.verity.hashOffset + good.verity.treeSize], stage: 'system', failing: ['system'], kinds: [['digest mismatch', 'verity root hash mismatch'], ['digest mismatch', 'verity root hash mismatch'], ['digest mismatch', 'verity root hash mismatch']] },
    { artifact: 'kernel manifest header', file: 'kernel.manifest', range: manifestHeader, stage: 'kernel', failing: ['kernel'], kinds: headerKinds },
    // The system stage's signer is allowed only by an authentic initramfs manifest.
    { artifact: 'initramfs manifest header', file: 'initramfs.manifest', range: manifestHeader, stage: 'initramfs', failing: ['initramfs', 'system'], kinds: headerKinds },
    // The manifest partition no longer matches the manifest either, and a
    // changed signer key id is not one the initramfs allows.
    { artifact: 'system manifest header', file: 'system.manifest', range: manifestHeader, stage: 'system', failing: ['system'], kinds: [['bad magic'], ['unknown key', 'key not allowed', 'manifest partition mismatch'], ['invalid field']] },
    { artifact: 'kernel manifest signature', file: 'kernel.manifest', range: manifestSignature('kernel.manifest'), stage: 'kernel', failing: ['kernel'], kinds: signatureKinds },
    { artifact: 'initramfs manifest signature', file: 'initramfs.manifest', range: manifestSignature('initramfs.manifest'), stage: 'initramfs', failing: ['initramfs', 'system'], kinds: signatureKinds },
    { artifact: 'system manifest signature', file: 'system.manifest', range: manifestSignature('system.manifest'), stage: 'system', failing: ['system'], kinds: [['bad signature', 'manifest partition mismatch'], ['bad signature', 'manifest partition mismatch'], ['bad signature', 'manifest partition mismatch']] },
  ];

  for (const tamper of cases) {
    it(`rejects a flipped byte in the ${tamper.artifact}`, async () => {
      const [start, end] = await tamper.range();
      const offsets = [start, Math.floor((start + end) / 2), end - 1];

      for (const [position, offset] of offsets.entries()) {
        const dir = await copyOfGood(`${tamper.file}-${offset}`);
        await flipByte(path.join(dir, tamper.file), offset);

        const result = await verifyBuildOutput(dir);

        expect(result.ok, `offset ${offset}`).toBe(false);
        expect(failedStages(result), `offset ${offset}`).toEqual(tamper.failing);
        expect(kindsOf(result, tamper.stage), `offset ${offset}`).toEqual(tamper.kinds[position]);
      }
    });
  }

  it('rejects a flipped byte in the embedded public key', async () => {
    for (const offset of [0, 1296, 2591]) {
      const dir = await copyOfGood(`embedded-${offset}`);
      const key = Buffer.from(SYSTEM.publicKey);
      key[offset] = key[offset]! ^ 0x01;
      await writeFile(path.join(dir, 'initramfs.cpio.gz'), initramfs(key));

      const result = await verifyBuildOutput(dir);

      expect(failedStages(result), `offset ${offset}`).toEqual(['vbmeta', 'initramfs']);
      expect(kindsOf(result, 'initramfs'), `offset ${offset}`).toEqual(['digest mismatch', 'embedded key mismatch']);
      expect(kindsOf(result, 'vbmeta'), `offset ${offset}`).toEqual(['image_digest']);
    }
  });

  it('rejects a signed initramfs with another embedded key', async () => {
    const key = Buffer.from(SYSTEM.publicKey);
    key[100] = key[100]! ^ 0x01;
    const fixture = await writeBuildOutput(await newFolder('embedded-signed'), { embeddedKey: key });

    const result = await verifyBuildOutput(fixture.dir);

    expect(failedStages(result)).toEqual(['initramfs']);
    expect(rowOf(result, 'initramfs').failures).toEqual([{ kind: 'embedded key mismatch', reason: `embedded key mismatch (${EMBEDDED_KEY_PATH} is not the system-stage key of ${path.join(fixture.dir, 'keys/system-stage.pub')})` }]);
  });

  it('rejects data appended to the initramfs', async () => {
    const dir = await copyOfGood('appended');
    const file = path.join(dir, 'initramfs.cpio.gz');
    const extra = writeCpio([{ path: 'init', type: 'file', mode: 0o755, data: 'exec /bin/sh\n' }], { mtime: MTIME });
    await writeFile(file, Buffer.concat([await readFile(file), Buffer.alloc(4 - ((await stat(file)).size % 4)), extra]));

    const result = await verifyBuildOutput(dir);

    expect(failedStages(result)).toEqual(['initramfs']);
    expect(kindsOf(result, 'initramfs')).toEqual(['image size mismatch', 'initramfs invalid']);
  });
});

describe('verifyBuildOutput key chain', () => {
  it('rejects a system manifest signed by the guest-stage key', async () => {
    const fixture = await writeBuildOutput(await newFolder('guest-signed'), { systemSigner: GUEST });

    const result = await verifyBuildOutput(fixture.dir);

    expect(failedStages(result)).toEqual(['system']);
    expect(kindsOf(result, 'system')).toEqual(['unknown key', 'key not allowed']);
    expect(rowOf(result, 'system').signerKeyId).toBe(keyIdHex(GUEST));
  });

  it('rejects a kernel manifest signed by the system-stage key', async () => {
    const fixture = await writeBuildOutput(await newFolder('kernel-by-system'), { kernelSigner: SYSTEM });

    const result = await verifyBuildOutput(fixture.dir);

    expect(failedStages(result)).toEqual(['kernel']);
    expect(kindsOf(result, 'kernel')).toEqual(['unknown key']);
  });

  it('rejects a wrong --root-key', async () => {
    const rootKeyFile = path.join(await newFolder('wrong-root'), 'root.pub');
    await writeFile(rootKeyFile, publicKeyPem(ATTACKER_ROOT));

    const result = await verifyBuildOutput(good.dir, { rootKeyPath: rootKeyFile });

    expect(result.trustAnchor.rootKey).toEqual({ keyId: keyIdHex(ATTACKER_ROOT), file: rootKeyFile, pinned: true });
    expect(failedStages(result)).toEqual(['kernel', 'initramfs', 'system']);
    expect(kindsOf(result, 'kernel')).toEqual(['unknown key']);
    expect(kindsOf(result, 'initramfs')).toEqual(['unknown key', 'next-stage key not certified', 'embedded key mismatch']);
    expect(kindsOf(result, 'system')[0]).toBe('certificate invalid');
  });

  it('accepts the pinned --root-key of the build', async () => {
    const rootKeyFile = path.join(await newFolder('right-root'), 'root.pub');
    await writeFile(rootKeyFile, publicKeyPem(ROOT));

    const result = await verifyBuildOutput(good.dir, { rootKeyPath: rootKeyFile });

    expect(result.ok).toBe(true);
    expect(result.trustAnchor.rootKey.pinned).toBe(true);
  });

  it('rejects a folder re-signed with another root key only when pinned', async () => {
    const fixture = await writeBuildOutput(await newFolder('attacker'), { root: ATTACKER_ROOT });
    const rootKeyFile = path.join(await newFolder('pinned'), 'root.pub');
    await writeFile(rootKeyFile, publicKeyPem(ROOT));

    expect((await verifyBuildOutput(fixture.dir)).ok).toBe(true);
    const pinned = await verifyBuildOutput(fixture.dir, { rootKeyPath: rootKeyFile });
    expect(pinned.ok).toBe(false);
    expect(failedStages(pinned)).toEqual(['kernel', 'initramfs', 'system']);
  });

  it('rejects a damaged certificate', async () => {
    const dir = await copyOfGood('certificate');
    await flipByte(path.join(dir, 'keys/system-stage.cert'), 200);

    const result = await verifyBuildOutput(dir);

    expect(failedStages(result)).toEqual(['initramfs', 'system']);
    expect(rowOf(result, 'system').failures[0]).toEqual({
      kind: 'certificate invalid',
      reason: `certificate invalid (${path.join(dir, 'keys/system-stage.cert')}: the root key signature does not verify)`,
    });
    expect(kindsOf(result, 'initramfs')).toEqual(['next-stage key not certified', 'embedded key mismatch']);
  });

  it('rejects a certificate of the wrong purpose', async () => {
    const dir = await copyOfGood('purpose');
    await cp(path.join(dir, 'keys/guest-stage.cert'), path.join(dir, 'keys/system-stage.cert'));

    const result = await verifyBuildOutput(dir);

    expect(rowOf(result, 'system').failures[0]?.reason).toBe(`certificate invalid (${path.join(dir, 'keys/system-stage.cert')}: certifies a guest-stage key, expected system-stage)`);
  });

  it('rejects a guest-stage key that the system manifest does not list', async () => {
    const dir = await copyOfGood('guest-key');
    await writeFile(path.join(dir, 'keys/guest-stage.pub'), publicKeyPem(ATTACKER_ROOT));

    const result = await verifyBuildOutput(dir);

    expect(failedStages(result)).toEqual(['system']);
    expect(kindsOf(result, 'system')).toEqual(['next-stage key not certified']);
  });

  it('rejects a wrong --avb-key', async () => {
    const avbKeyFile = path.join(await newFolder('avb-key'), 'avb_pubkey.bin');
    await writeFile(avbKeyFile, encodeAvbPublicKey(await testKey(2048)));

    const result = await verifyBuildOutput(good.dir, { avbKeyPath: avbKeyFile });

    expect(failedStages(result)).toEqual(['vbmeta']);
    expect(kindsOf(result, 'vbmeta')).toEqual(['key_mismatch']);
    expect(result.trustAnchor.avbKey?.pinned).toBe(true);
  });

  it('rejects --avb-key for a build without vbmeta', async () => {
    const fixture = await writeBuildOutput(await newFolder('no-vbmeta-pinned'), { withoutVbmeta: true });
    const avbKeyFile = path.join(fixture.dir, 'avb.bin');
    await writeFile(avbKeyFile, encodeAvbPublicKey(await testKey(4096)));

    const result = await verifyBuildOutput(fixture.dir, { avbKeyPath: avbKeyFile });

    expect(failedStages(result)).toEqual(['vbmeta']);
    expect(kindsOf(result, 'vbmeta')).toEqual(['vbmeta missing']);
  });
});

describe('verifyBuildOutput rollback', () => {
  async function counterStore(name: string, location0: bigint, location1: bigint): Promise<string> {
    const file = path.join(await newFolder(name), 'counters.img');
    const values = new Array<bigint>(32).fill(0n);
    values[0] = location0;
    values[1] = location1;
    await createCounterStore(file, { counters: values });
    return file;
  }

  it('rejects a system index below its counter', async () => {
    const result = await verifyBuildOutput(good.dir, { countersPath: await counterStore('system-rollback', 3n, 8n) });

    expect(failedStages(result)).toEqual(['system']);
    expect(rowOf(result, 'system').failures).toEqual([{ kind: 'rollback', reason: 'rollback (index 7 < stored 8)' }]);
  });

  it('rejects stage 0 and vbmeta indexes below location 0', async () => {
    const result = await verifyBuildOutput(good.dir, { countersPath: await counterStore('stage0-rollback', 4n, 0n) });

    expect(failedStages(result)).toEqual(['vbmeta', 'kernel', 'initramfs']);
    expect(result.failures).toEqual([
      'vbmeta: rollback (index 3 < stored 4)',
      'kernel: rollback (index 3 < stored 4)',
      'initramfs: rollback (index 3 < stored 4)',
    ]);
  });

  it('rejects a damaged counter store as bad input', async () => {
    const file = await counterStore('damaged', 0n, 0n);
    await flipByte(file, 20);

    const error = await rejection(verifyBuildOutput(good.dir, { countersPath: file }));

    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toBe(`--counters ${file}: counter store invalid (checksum mismatch); pass the counter store of the device`);
  });

  it('leaves the counter store unchanged', async () => {
    const file = await counterStore('unchanged', 1n, 2n);
    const before = await readFile(file);

    await verifyBuildOutput(good.dir, { countersPath: file });

    expect(await readFile(file)).toEqual(before);
  });
});

describe('verifyBuildOutput consistency checks', () => {
  async function editJson(dir: string, name: string, edit: (value: Record<string, unknown>) => void): Promise<void> {
    const file = path.join(dir, name);
    const value = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    edit(value);
    await writeFile(file, JSON.stringify(value));
  }

  it('rejects a verity.json salt that differs', async () => {
    const dir = await copyOfGood('verity-json');
    await editJson(dir, 'verity.json', (record) => {
      record.salt = '00'.repeat(32);
    });

    const result = await verifyBuildOutput(dir);

    expect(rowOf(result, 'system').failures).toEqual([{
      kind: 'verity parameters mismatch',
      reason: `verity parameters mismatch (verity.json salt is "${'00'.repeat(32)}", the manifest has "${good.verity.salt.toString('hex')}")`,
    }]);
  });

  it('rejects a dm-mod.create table that differs', async () => {
    const edits: [string, (cmdline: string) => string, string][] = [
      ['root digest', (cmdline) => cmdline.replace(good.verity.rootDigest.toString('hex'), 'ab'.repeat(32)), 'root digest'],
      ['hash start block', (cmdline) => cmdline.replace(` ${good.verity.dataBlocks} ${good.verity.dataBlocks} sha256`, ` ${good.verity.dataBlocks} ${good.verity.dataBlocks + 1} sha256`), 'hash start block'],
      ['hash device', (cmdline) => cmdline.replace('/dev/vda /dev/vda', '/dev/vda /dev/vdb'), 'reads the hash tree from /dev/vdb'],
      ['read-write', (cmdline) => cmdline.replace(',ro,', ',rw,'), "has flags 'rw', expected 'ro'"],
      ['ignore_corruption', (cmdline) => cmdline.replace(/("\s)/, ' 1 ignore_corruption$1'), 'sets ignore_corruption'],
      ['second parameter', (cmdline) => `${cmdline} dm-mod.create=x`, 'cmdline has 2 dm-mod.create= parameters, expected 1'],
    ];
    for (const [name, edit, expected] of edits) {
      const dir = await copyOfGood(`dm-${name}`);
      await editJson(dir, 'boot.json', (config) => {
        config.cmdline = edit(config.cmdline as string);
      });

      const result = await verifyBuildOutput(dir);

      expect(failedStages(result), name).toEqual(['system']);
      expect(kindsOf(result, 'system'), name).toEqual(['verity parameters mismatch']);
      expect(rowOf(result, 'system').failures[0]?.reason, name).toContain(expected);
    }
  });

  it('rejects a vbmeta cmdline with another verity root', async () => {
    const otherRoot = 'cd'.repeat(32);
    const fixture = await writeBuildOutput(await newFolder('vbmeta-cmdline'), {
      editVbmetaCmdline: (cmdline) => cmdline.replace(/sha256 [0-9a-f]{64}/, `sha256 ${otherRoot}`),
    });

    const result = await verifyBuildOutput(fixture.dir);

    expect(failedStages(result)).toEqual(['system']);
    expect(rowOf(result, 'system').failures).toEqual([{
      kind: 'verity parameters mismatch',
      reason: `verity parameters mismatch (vbmeta kernel cmdline dm-mod.create= root digest is "${otherRoot}", the manifest has "${fixture.verity.rootDigest.toString('hex')}")`,
    }]);
  });

  it('rejects a qwamos.device parameter for another device', async () => {
    const dir = await copyOfGood('qwamos-device');
    await editJson(dir, 'boot.json', (config) => {
      config.cmdline = (config.cmdline as string).replace(`qwamos.device=${DEVICE}`, 'qwamos.device=pixel-7');
    });

    const result = await verifyBuildOutput(dir);

    expect(failedStages(result)).toEqual(['system']);
    expect(rowOf(result, 'system').failures).toEqual([{
      kind: 'wrong device profile',
      reason: `wrong device profile (boot.json has qwamos.device=pixel-7, the chain is for ${DEVICE})`,
    }]);
  });

  it('rejects a manifest partition with data after the manifest', async () => {
    const dir = await copyOfGood('manifest-partition');
    await flipByte(path.join(dir, 'system-manifest.img'), MANIFEST_MAX_SIZE - 1);

    const result = await verifyBuildOutput(dir);

    expect(rowOf(result, 'system').failures).toEqual([{
      kind: 'manifest partition mismatch',
      reason: `manifest partition mismatch (${path.join(dir, 'system-manifest.img')} has a non-zero byte at offset ${MANIFEST_MAX_SIZE - 1} after the manifest)`,
    }]);
  });

  it('rejects a boot.json that boots another kernel', async () => {
    const dir = await copyOfGood('boot-kernel');
    await editJson(dir, 'boot.json', (config) => {
      config.kernel = 'Image.old';
    });

    const result = await verifyBuildOutput(dir);

    expect(failedStages(result)).toEqual(['kernel']);
    expect(rowOf(result, 'kernel').failures[0]?.reason).toBe('boot config mismatch (boot.json boots kernel "Image.old", not the checked Image)');
  });

  it('rejects a missing image as a failure', async () => {
    const dir = await copyOfGood('missing-image');
    await rm(path.join(dir, 'system.img'));

    const result = await verifyBuildOutput(dir);

    expect(failedStages(result)).toEqual(['system']);
    expect(rowOf(result, 'system').failures[0]).toEqual({ kind: 'cannot read', reason: `cannot read (${path.join(dir, 'system.img')}: ENOENT)` });
  });
});

describe('verifyBuildOutput rejects folders that are not build outputs', () => {
  it('rejects a folder without build.json', async () => {
    const error = await rejection(verifyBuildOutput(await newFolder('empty')));

    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain('is not a build output folder');
  });

  it('rejects a build.json without chain', async () => {
    const dir = await newFolder('unsigned');
    await writeFile(path.join(dir, 'build.json'), JSON.stringify({ formatVersion: 1, device: DEVICE }));

    const error = await rejection(verifyBuildOutput(dir));

    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain("there is no 'chain' section, so the build was not signed");
  });

  it('rejects a chain that drops a stage', async () => {
    const dir = await copyOfGood('dropped');
    const record = JSON.parse(await readFile(path.join(dir, 'build.json'), 'utf8')) as { chain: typeof CHAIN };
    record.chain.stages = record.chain.stages.slice(0, 2);
    await writeFile(path.join(dir, 'build.json'), JSON.stringify(record));

    const error = await rejection(verifyBuildOutput(dir));

    expect(error.message).toContain('chain lists 2 stages; a QWAMOS build has kernel (root), initramfs (root), system (system-stage), the system with verity');
  });

  it('rejects a chain that changes a signer role', async () => {
    const dir = await copyOfGood('signer-role');
    const record = JSON.parse(await readFile(path.join(dir, 'build.json'), 'utf8')) as { chain: typeof CHAIN };
    record.chain.stages[2]!.signer = 'root';
    await writeFile(path.join(dir, 'build.json'), JSON.stringify(record));

    const error = await rejection(verifyBuildOutput(dir));

    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain("chain stage 2 ('system' signed by root) is not stage 2 of a QWAMOS build");
  });

  it('rejects a chain file outside the folder', async () => {
    const dir = await copyOfGood('outside');
    const record = JSON.parse(await readFile(path.join(dir, 'build.json'), 'utf8')) as { chain: typeof CHAIN };
    record.chain.keys.root = '../root.pub';
    await writeFile(path.join(dir, 'build.json'), JSON.stringify(record));

    const error = await rejection(verifyBuildOutput(dir));

    expect(error.message).toContain('chain names the file "../root.pub", which is not a plain relative path inside the folder');
  });

  it('rejects a chain with a missing field', async () => {
    const dir = await copyOfGood('missing-field');
    const record = JSON.parse(await readFile(path.join(dir, 'build.json'), 'utf8')) as { chain: { stages: Record<string, unknown>[] } };
    delete record.chain.stages[2]!.image;
    await writeFile(path.join(dir, 'build.json'), JSON.stringify(record));

    const error = await rejection(verifyBuildOutput(dir));

    expect(error.message).toContain("chain at /stages/2: missing required property 'image'");
  });

  it('rejects an unreadable --root-key', async () => {
    const error = await rejection(verifyBuildOutput(good.dir, { rootKeyPath: path.join(scratch, 'no-such.pub') }));

    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toContain('--root-key');
  });

  it('rejects a --root-key that is not an ML-DSA-87 key', async () => {
    const file = path.join(await newFolder('bad-root'), 'root.pub');
    await writeFile(file, 'not a key\n');

    const error = await rejection(verifyBuildOutput(good.dir, { rootKeyPath: file }));

    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toContain(`invalid public key (${file}: no "-----BEGIN ...-----" line found; the file is not PEM)`);
  });
});

/** The folder `qwamos-build build` writes by default; checked only when a signed build is there. */
const REAL_BUILD = path.resolve(process.cwd(), 'out', DEVICE);

async function hasSignedBuild(): Promise<boolean> {
  const record = await readFile(path.join(REAL_BUILD, 'build.json'), 'utf8').catch(() => undefined);
  return record !== undefined && (JSON.parse(record) as { chain?: unknown }).chain !== undefined;
}

describe.skipIf(!(await hasSignedBuild()))('verifyBuildOutput on the build in out/', () => {
  it('passes every stage of the real build', async () => {
    const result = await verifyBuildOutput(REAL_BUILD);

    expect(result.failures).toEqual([]);
    expect(result.stages.map((row) => row.stage)).toEqual(['vbmeta', 'kernel', 'initramfs', 'system']);
  });

  it('rejects a flipped byte in the real system image', async () => {
    const dir = await newFolder('real-build');
    await cp(REAL_BUILD, dir, { recursive: true });
    await flipByte(path.join(dir, 'system.img'), 4096 * 3 + 17);

    const result = await verifyBuildOutput(dir);

    expect(failedStages(result)).toEqual(['system']);
    expect(kindsOf(result, 'system')).toEqual(['digest mismatch']);
  });
});

describe('qwamos-build verify', () => {
  interface CliResult {
    status: number;
    stdout: string;
    stderr: string;
  }

  async function cli(args: string[]): Promise<CliResult> {
    let stdout = '';
    let stderr = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout += String(chunk);
      return true;
    });
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    });
    try {
      return { status: await main(args), stdout, stderr };
    } finally {
      vi.restoreAllMocks();
    }
  }

  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('prints the table and exits 0 for a good folder', async () => {
    const { status, stdout } = await cli(['verify', good.dir]);

    expect(status).toBe(0);
    const lines = stdout.split('\n');
    expect(lines[0]).toBe(`trust anchor: root key ${keyIdHex(ROOT)} from the build output's own ${path.join(good.dir, 'keys/root.pub')}; pass --root-key FILE to pin the product's key`);
    expect(stdout).toContain('rollback: not checked (no --counters)');
    expect(stdout).toMatch(new RegExp(`^system +ok +${keyIdHex(SYSTEM).slice(0, 16)} +7/1$`, 'm'));
    expect(stdout).toMatch(new RegExp(`^kernel +ok +${keyIdHex(ROOT).slice(0, 16)} +3/0$`, 'm'));
    expect(lines.filter((line) => /^(vbmeta|kernel|initramfs|system) /.test(line))).toHaveLength(4);
    expect(stdout).toContain('verified: all 4 stages passed');
  });

  it('exits 1 and names the failing stage', async () => {
    const dir = await copyOfGood('cli-fail');
    await flipByte(path.join(dir, 'system.img'), 5);

    const { status, stdout } = await cli(['verify', dir]);

    expect(status).toBe(1);
    expect(stdout).toMatch(/^system +FAIL +[0-9a-f]{16} +7\/1 +digest mismatch$/m);
    expect(stdout).toContain('  system: digest mismatch');
    expect(stdout).toContain('verification failed: 1 of 4 stages failed');
  });

  it('prints JSON with --json', async () => {
    const counters = path.join(await newFolder('cli-json'), 'counters.img');
    await createCounterStore(counters);

    const { status, stdout } = await cli(['verify', good.dir, '--json', '--counters', counters]);

    expect(status).toBe(0);
    const report = JSON.parse(stdout) as Record<string, unknown> & { stages: StageRow[] };
    expect(Object.keys(report)).toEqual(['ok', 'trustAnchor', 'rollback', 'stages', 'failures']);
    expect(report.ok).toBe(true);
    expect(report.rollback).toEqual({ checked: true, counters });
    expect(report.stages.map((row) => row.stage)).toEqual(['vbmeta', 'kernel', 'initramfs', 'system']);
    expect(report.stages[3]).toMatchObject({ stage: 'system', status: 'ok', signerKeyId: keyIdHex(SYSTEM), rollbackIndex: '7', rollbackIndexLocation: 1, failures: [] });
  });

  it('prints failures in JSON and exits 1', async () => {
    const dir = await copyOfGood('cli-json-fail');
    await flipByte(path.join(dir, 'Image'), 0);

    const { status, stdout } = await cli(['verify', dir, '--json']);

    expect(status).toBe(1);
    const report = JSON.parse(stdout) as { ok: boolean; failures: string[] };
    expect(report.ok).toBe(false);
    expect(report.failures[0]).toMatch(/^vbmeta: sha256 digest of .*Image does not match the hash descriptor of 'kernel'/);
    expect(report.failures[1]).toBe('kernel: digest mismatch');
  });

  it('says when the root key is pinned', async () => {
    const rootKeyFile = path.join(await newFolder('cli-pinned'), 'root.pub');
    await writeFile(rootKeyFile, publicKeyPem(ROOT));

    const { status, stdout } = await cli(['verify', good.dir, '--root-key', rootKeyFile]);

    expect(status).toBe(0);
    expect(stdout.split('\n')[0]).toBe(`trust anchor: root key ${keyIdHex(ROOT)} pinned by --root-key ${rootKeyFile}`);
  });

  it('lists the checks a phone build skips', async () => {
    const fixture = await writeBuildOutput(await newFolder('cli-phone'), { phoneLayout: true });

    const { status, stdout } = await cli(['verify', fixture.dir]);

    expect(status).toBe(0);
    expect(stdout).toContain('\nNot checked:\n  kernel: boot config (no boot.json in the build output)\n');
    expect(stdout).toContain('  system: signer certificate (build.json names no system-stage certificate)\n');
    expect(stdout).not.toMatch(/^ {2}\w+: rollback/m);
  });

  it('exits 2 without a folder', async () => {
    const { status, stderr } = await cli(['verify']);

    expect(status).toBe(2);
    expect(stderr).toContain('verify: expected one build output folder, got 0 arguments');
  });

  it('exits 2 for an unknown option', async () => {
    const { status, stderr } = await cli(['verify', good.dir, '--counter', 'x']);

    expect(status).toBe(2);
    expect(stderr).toContain("Unknown option '--counter'");
  });

  it('exits 2 for a folder that is not a build output', async () => {
    const { status, stdout } = await cli(['verify', await newFolder('cli-empty'), '--json']);

    expect(status).toBe(2);
    expect(JSON.parse(stdout)).toMatchObject({ ok: false, error: { code: 'INPUT_NOT_FOUND' } });
  });
});
