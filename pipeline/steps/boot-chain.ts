/**
 * Step boot-chain: signs every stage of the host image.
 * - Stage 0 (kernel, initramfs): ML-DSA-87 manifests signed by the root
 *   key, and an AVB vbmeta image signed with the RSA AVB key, which is
 *   what a phone bootloader (or boot-test, standing in for one) checks.
 * - Stage 1 (system): an ML-DSA-87 manifest with the dm-verity parameters,
 *   signed by the system-stage key, which the initramfs verifier checks.
 * It also writes the kernel command line, whose dm-verity table must match
 * the system manifest.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { deriveSalt } from '../../signing/avb-footer.js';
import type { AvbDescriptor } from '../../signing/avb-descriptors.js';
import { loadAvbKey, type AvbRsaKey } from '../../signing/avb-key.js';
import { makeVbmetaImage } from '../../signing/avb-vbmeta.js';
import { decryptStoredKey } from '../../signing/keys-private.js';
import type { UnsignedManifest } from '../../signing/manifest.js';
import { hashImage } from '../../signing/manifest-image.js';
import { signManifest } from '../../signing/manifest-sign.js';
import { rawMldsaPublicKey, type SigningSetup } from '../signing-setup.js';
import type { Step } from '../step.js';
import { INITRAMFS_FILE } from './initramfs.js';
import { SYSTEM_IMAGE_FILE, VERITY_FILE, type VerityRecord } from './system-image.js';

export const CMDLINE_FILE = 'cmdline.txt';
export const VBMETA_FILE = 'vbmeta.img';
export const SYSTEM_MANIFEST_PARTITION_FILE = 'system-manifest.img';

/** Size of the disk that carries the system manifest: the largest manifest a parser accepts. */
export const MANIFEST_PARTITION_SIZE = 8192;

/** Counter slots: stage 0 shares slot 0 with vbmeta; the system stage uses slot 1. */
export const ROLLBACK_LOCATION = { boot: 0, system: 1 } as const;

export interface BootChainOptions {
  deviceProfile: string;
  kernelFile: string;
  rollbackIndex: number;
  /** External signing program, part of the cache key so that switching signers re-signs. */
  signerCommand?: string;
  /** Builds the kernel command line from the system image's verity parameters. */
  cmdline(verity: VerityRecord): string;
  signing: SigningSetup;
}

function keyId(hex: string): Uint8Array {
  return Buffer.from(hex, 'hex');
}

async function stageManifest(stage: string, imagePath: string, options: BootChainOptions, location: number, next: string[], verity?: VerityRecord): Promise<UnsignedManifest> {
  const digest = await hashImage(imagePath);
  return {
    stage,
    deviceProfile: options.deviceProfile,
    imageSize: digest.imageSize,
    imageSha512: digest.imageSha512,
    ...(verity ? {
      verity: {
        hashAlgorithm: verity.hashAlgorithm as 'sha256',
        dataBlockSize: verity.dataBlockSize,
        hashBlockSize: verity.hashBlockSize,
        dataBlockCount: BigInt(verity.dataBlocks),
        hashTreeOffset: BigInt(verity.hashOffset),
        rootDigest: Buffer.from(verity.rootDigest, 'hex'),
        salt: Buffer.from(verity.salt, 'hex'),
      },
    } : {}),
    rollbackIndexLocation: location,
    rollbackIndex: BigInt(options.rollbackIndex),
    nextStageKeyIds: next.map(keyId),
  };
}

/** Computes an AVB hash descriptor as avbtool's add_hash_footer does, with a derived salt. */
async function hashDescriptor(partitionName: string, imagePath: string): Promise<AvbDescriptor> {
  const image = await readFile(imagePath);
  const salt = deriveSalt('sha256', partitionName, createHash('sha256').update(image).digest());
  const digest = createHash('sha256').update(salt).update(image).digest();
  return { kind: 'hash', imageSize: image.length, hashAlgorithm: 'sha256', partitionName, salt, digest, flags: 0 };
}

export async function avbSigningKey(signing: SigningSetup): Promise<AvbRsaKey> {
  // NOTE: vbmeta is signed with the decrypted local AVB key; --signer
  // covers the ML-DSA-87 stages only.
  const decrypted = await decryptStoredKey(signing.store, signing.avb);
  if (decrypted.algorithm !== 'RSA-4096') throw new Error(`AVB key ${signing.avb.id} is not an RSA key`);
  return loadAvbKey(decrypted.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, `AVB key ${signing.avb.id}`);
}

export function bootChainStep(options: BootChainOptions): Step {
  const { signing } = options;

  return {
    id: 'boot-chain',
    dependsOn: ['kernel', 'initramfs', 'system-image'],
    version: 1,
    inputs: async () => ({
      digests: { root: signing.root.id, systemStage: signing.systemStage.id, guestStage: signing.guestStage.id, avb: signing.avb.id },
      config: { deviceProfile: options.deviceProfile, rollbackIndex: options.rollbackIndex, kernelFile: options.kernelFile, signerCommand: options.signerCommand ?? null },
    }),
    async run({ outputDir, dependencies, progress }) {
      const kernel = path.join(dependencies.kernel!, options.kernelFile);
      const initramfs = path.join(dependencies.initramfs!, INITRAMFS_FILE);
      const system = path.join(dependencies['system-image']!, SYSTEM_IMAGE_FILE);
      const verity = JSON.parse(await readFile(path.join(dependencies['system-image']!, VERITY_FILE), 'utf8')) as VerityRecord;
      const cmdline = options.cmdline(verity);
      await writeFile(path.join(outputDir, CMDLINE_FILE), `${cmdline}\n`);

      progress('signing stage manifests with ML-DSA-87');
      const rootSigner = signing.signer('root');
      const rootPublic = rawMldsaPublicKey(signing.root);
      const kernelManifest = await stageManifest('kernel', kernel, options, ROLLBACK_LOCATION.boot, []);
      const initramfsManifest = await stageManifest('initramfs', initramfs, options, ROLLBACK_LOCATION.boot, [signing.systemStage.id]);
      const systemManifest = await stageManifest('system', system, options, ROLLBACK_LOCATION.system, [signing.guestStage.id], verity);
      await writeFile(path.join(outputDir, 'kernel.manifest'), await signManifest(kernelManifest, rootSigner, rootPublic));
      await writeFile(path.join(outputDir, 'initramfs.manifest'), await signManifest(initramfsManifest, rootSigner, rootPublic));

      const systemSigned = await signManifest(systemManifest, signing.signer('system-stage'), rawMldsaPublicKey(signing.systemStage));
      await writeFile(path.join(outputDir, 'system.manifest'), systemSigned);
      const partition = Buffer.alloc(MANIFEST_PARTITION_SIZE);
      systemSigned.copy(partition);
      await writeFile(path.join(outputDir, SYSTEM_MANIFEST_PARTITION_FILE), partition);

      progress('signing vbmeta with the AVB key');
      await makeVbmetaImage({
        output: path.join(outputDir, VBMETA_FILE),
        algorithm: 'SHA256_RSA4096',
        key: await avbSigningKey(signing),
        rollbackIndex: options.rollbackIndex,
        rollbackIndexLocation: ROLLBACK_LOCATION.boot,
        descriptors: [await hashDescriptor('kernel', kernel), await hashDescriptor('initramfs', initramfs)],
        kernelCmdlines: [cmdline],
      });
    },
  };
}
