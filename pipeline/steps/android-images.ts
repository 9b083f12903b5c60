/**
 * Step android-images: the images a phone's bootloader accepts, from the
 * kernel, the initramfs and the system image.
 * - boot (kernel) and init_boot (the initramfs as generic ramdisk): boot
 *   image v4 with AVB hash footers signed for their chained rollback
 *   locations, as the profile lists them;
 * - vendor_boot v4 with a hash footer whose descriptor goes into vbmeta;
 * - system: EROFS with an AVB hashtree footer (dm-verity format 1);
 * - vbmeta: hash and hashtree descriptors, chain descriptors;
 * - the ML-DSA-87 stage manifests, avb_custom_key, and sparse images for
 *   fastboot.
 * Every image is checked against its partition size first.
 */
import { copyFile, mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from '../../core/errors.js';
import { writeBootImage, writeInitBootImage } from '../../images/bootimg-write.js';
import { writeVendorBootImage } from '../../images/bootimg-vendor.js';
import { gzipDeterministic } from '../../images/compress.js';
import { writeCpio } from '../../images/cpio.js';
import { writeSparseImage } from '../../images/sparse-write.js';
import { encodeAvbPublicKey } from '../../signing/avb-key.js';
import { addHashFooter, maxImageSizeForHashFooter } from '../../signing/avb-hash-footer.js';
import { addHashtreeFooter, maxImageSizeForHashtreeFooter } from '../../signing/avb-hashtree-footer.js';
import { makeVbmetaImage } from '../../signing/avb-vbmeta.js';
import type { UnsignedManifest } from '../../signing/manifest.js';
import { hashImage } from '../../signing/manifest-image.js';
import { signManifest } from '../../signing/manifest-sign.js';
import type { AndroidSpec, DeviceProfile } from '../profiles.js';
import { rawMldsaPublicKey, type SigningSetup } from '../signing-setup.js';
import type { Step } from '../step.js';
import { avbSigningKey } from './boot-chain.js';
import { INITRAMFS_FILE } from './initramfs.js';
import { SYSTEM_IMAGE_FILE } from './system-image.js';

export const AVB_CUSTOM_KEY_FILE = 'avb_custom_key.bin';
export const SPARSE_DIR = 'sparse';

export interface AndroidImagesOptions {
  profile: DeviceProfile;
  /** Prebuilt kernel Image. */
  kernelFile: string;
  cmdline: string;
  rollbackIndex: number;
  signing: SigningSetup;
}

function requireAndroid(profile: DeviceProfile): AndroidSpec {
  if (!profile.android) throw new QwamosError('INPUT_INVALID', `device '${profile.id}' has no android section; it is not a phone profile`);
  return profile.android;
}

function partitionSize(android: AndroidSpec, profile: DeviceProfile, name: string): number {
  const partition = android.partitions[name];
  if (!partition) throw new QwamosError('INPUT_INVALID', `device-profiles/${profile.id}.yaml has no partition '${name}' in android.partitions; add it with its size`);
  return partition.size;
}

/** Rejects an image that does not fit its partition, naming both sizes and the limit. */
export function checkFits(partition: string, imageSize: number, partitionBytes: number, limit: number, what: string): void {
  if (imageSize > limit) {
    throw new QwamosError('LIMIT_EXCEEDED', `${partition}: image is ${imageSize} bytes but partition ${partition} is ${partitionBytes} bytes, which leaves room for at most ${limit} bytes of image after ${what}`, {
      data: { partition, imageSize, partitionSize: partitionBytes, limit },
    });
  }
}

function chainLocation(android: AndroidSpec, partition: string): number | undefined {
  return android.avb.chainedPartitions?.find((chain) => chain.partition === partition)?.rollbackIndexLocation;
}

export function androidImagesStep(options: AndroidImagesOptions): Step {
  const { profile, signing } = options;
  const android = requireAndroid(profile);

  return {
    id: 'android-images',
    dependsOn: ['initramfs', 'system-image'],
    version: 1,
    inputs: async () => ({
      files: { kernel: options.kernelFile },
      digests: { root: signing.root.id, systemStage: signing.systemStage.id, avb: signing.avb.id },
      config: { android, device: profile.id, cmdline: options.cmdline, rollbackIndex: options.rollbackIndex },
    }),
    async run({ outputDir, dependencies, progress }) {
      const out = (name: string): string => path.join(outputDir, name);
      const key = await avbSigningKey(signing);
      const avbCommon = { algorithm: android.avb.algorithm, key, rollbackIndex: options.rollbackIndex };
      const initramfs = path.join(dependencies.initramfs!, INITRAMFS_FILE);

      progress('packing boot, init_boot and vendor_boot');
      await writeBootImage({ output: out('boot.img'), headerVersion: 4, kernel: options.kernelFile, cmdline: options.cmdline });
      await writeInitBootImage({ output: out('init_boot.img'), ramdisk: initramfs });
      const emptyRamdisk = gzipDeterministic(writeCpio([], { mtime: 0 }));
      await writeVendorBootImage({ output: out('vendor_boot.img'), headerVersion: 4, pageSize: android.pageSize, vendorRamdisk: emptyRamdisk });

      const hashDescriptors = [];
      for (const partition of ['boot', 'init_boot', 'vendor_boot']) {
        const size = partitionSize(android, profile, partition);
        checkFits(partition, (await stat(out(`${partition}.img`))).size, size, maxImageSizeForHashFooter(size), 'the AVB footer and vbmeta');
        const location = chainLocation(android, partition);
        const result = await addHashFooter(out(`${partition}.img`), {
          ...avbCommon,
          partitionName: partition,
          partitionSize: size,
          rollbackIndexLocation: location ?? 0,
        });
        if (location === undefined) hashDescriptors.push(result.descriptor);
      }

      progress('adding the system hashtree footer');
      const systemSize = partitionSize(android, profile, 'system');
      await copyFile(path.join(dependencies['system-image']!, SYSTEM_IMAGE_FILE), out(SYSTEM_IMAGE_FILE));
      const erofsSize = (await stat(out(SYSTEM_IMAGE_FILE))).size;
      checkFits('system', erofsSize, systemSize, maxImageSizeForHashtreeFooter(systemSize), 'the hash tree, the AVB footer and vbmeta');
      const system = await addHashtreeFooter(out(SYSTEM_IMAGE_FILE), { ...avbCommon, partitionName: 'system', partitionSize: systemSize, hashAlgorithm: 'sha256', generateFec: false });

      progress('signing vbmeta');
      const publicKeyBlob = encodeAvbPublicKey(key);
      await writeFile(out(AVB_CUSTOM_KEY_FILE), publicKeyBlob);
      await makeVbmetaImage({
        ...avbCommon,
        output: out('vbmeta.img'),
        rollbackIndexLocation: 0,
        descriptors: [...hashDescriptors, system.descriptor],
        chainPartitions: (android.avb.chainedPartitions ?? []).map((chain) => ({ partitionName: chain.partition, rollbackIndexLocation: chain.rollbackIndexLocation, publicKey: publicKeyBlob })),
      });
      checkFits('vbmeta', (await stat(out('vbmeta.img'))).size, partitionSize(android, profile, 'vbmeta'), partitionSize(android, profile, 'vbmeta'), 'nothing else');

      progress('signing the ML-DSA-87 stage manifests');
      await signStageManifests(out, options, system.descriptor);

      progress('writing sparse images');
      await mkdir(out(SPARSE_DIR));
      await writeSparseImage(out(SYSTEM_IMAGE_FILE), path.join(out(SPARSE_DIR), SYSTEM_IMAGE_FILE), { blockSize: 4096 });
    },
  };
}

async function signStageManifests(out: (name: string) => string, options: AndroidImagesOptions, system: { treeOffset: number; treeSize: number; imageSize: number; rootDigest: Uint8Array; salt: Uint8Array }): Promise<void> {
  const { signing, profile } = options;
  const base = { deviceProfile: profile.id, rollbackIndex: BigInt(options.rollbackIndex) };
  const plain = async (stage: string, file: string, next: string[]): Promise<UnsignedManifest> => {
    const digest = await hashImage(out(file));
    return { ...base, stage, imageSize: digest.imageSize, imageSha512: digest.imageSha512, rollbackIndexLocation: 0, nextStageKeyIds: next.map((id) => Buffer.from(id, 'hex')) };
  };

  const rootSigner = signing.signer('root');
  const rootPublic = rawMldsaPublicKey(signing.root);
  await writeFile(out('boot.manifest'), await signManifest(await plain('kernel', 'boot.img', []), rootSigner, rootPublic));
  await writeFile(out('init_boot.manifest'), await signManifest(await plain('initramfs', 'init_boot.img', [signing.systemStage.id]), rootSigner, rootPublic));

  // The signed system stage covers the data and the tree, not the AVB footer area.
  const coveredSize = BigInt(system.treeOffset + system.treeSize);
  const digest = await hashImage(out(SYSTEM_IMAGE_FILE), coveredSize);
  const systemManifest: UnsignedManifest = {
    ...base,
    stage: 'system',
    imageSize: digest.imageSize,
    imageSha512: digest.imageSha512,
    verity: {
      hashAlgorithm: 'sha256',
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      dataBlockCount: BigInt(system.imageSize / 4096),
      hashTreeOffset: BigInt(system.treeOffset),
      rootDigest: system.rootDigest,
      salt: system.salt,
    },
    rollbackIndexLocation: 1,
    nextStageKeyIds: [Buffer.from(signing.guestStage.id, 'hex')],
  };
  await writeFile(out('system.manifest'), await signManifest(systemManifest, signing.signer('system-stage'), rawMldsaPublicKey(signing.systemStage)));
}

