/**
 * Step system-image: the recipe's overlays in a deterministic EROFS image
 * with a dm-verity hash tree appended, and verity.json describing the tree.
 */
import { chmod, cp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildErofsImage } from '../../images/erofs.js';
import { appendHashTreeInPlace, type VerityImage } from '../../images/verity-image.js';
import type { LoadedRecipe } from '../recipes.js';
import type { Step } from '../step.js';
import { toolVersion } from '../tool-versions.js';

export const SYSTEM_IMAGE_FILE = 'system.img';
export const VERITY_FILE = 'verity.json';

/** verity.json: the tree parameters in the form the boot configuration needs. */
export interface VerityRecord {
  rootDigest: string;
  salt: string;
  hashAlgorithm: string;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: number;
  hashOffset: number;
  treeSize: number;
}

export function verityRecord(image: VerityImage): VerityRecord {
  return {
    rootDigest: image.rootDigest.toString('hex'),
    salt: image.salt.toString('hex'),
    hashAlgorithm: image.hashAlgorithm,
    dataBlockSize: image.dataBlockSize,
    hashBlockSize: image.hashBlockSize,
    dataBlocks: image.dataBlocks,
    hashOffset: image.hashOffset,
    treeSize: image.treeSize,
  };
}

/**
 * With `appendVerity` false (phone builds) the step writes the bare EROFS
 * image, and the AVB hashtree footer is added later with the partition size.
 */
export function systemImageStep(recipe: LoadedRecipe, epoch: number, appendVerity = true): Step {
  const overlays = Object.fromEntries(recipe.overlayPaths.map((overlay, index) => [`overlay-${index}`, overlay]));

  return {
    id: 'system-image',
    dependsOn: ['busybox'],
    version: 3,
    inputs: async () => ({
      trees: overlays,
      config: { epoch, verity: recipe.system.verity, appendVerity },
      tools: { 'mkfs.erofs': await toolVersion('mkfs.erofs') },
    }),
    async run({ outputDir, dependencies, logFile, progress }) {
      const staging = path.join(outputDir, '.staging');
      await mkdir(staging);
      // mkfs.erofs copies the source folder's own mode to the image root.
      await chmod(staging, 0o755);

      // The system carries its own userland, so that it does not depend on
      // the initramfs staying mounted.
      await mkdir(path.join(staging, 'bin'), { mode: 0o755 });
      await cp(path.join(dependencies.busybox!, 'busybox'), path.join(staging, 'bin', 'busybox'));
      await chmod(path.join(staging, 'bin', 'busybox'), 0o755);
      await symlink('busybox', path.join(staging, 'bin', 'sh'));
      for (const overlay of recipe.overlayPaths) {
        await cp(overlay, staging, { recursive: true, force: true, verbatimSymlinks: true });
      }

      progress('making the EROFS image');
      const image = path.join(outputDir, SYSTEM_IMAGE_FILE);
      await buildErofsImage({ sourceDir: staging, output: image, timestamp: epoch, label: 'system', logFile });
      await rm(staging, { recursive: true });
      if (!appendVerity) return;

      progress('appending the dm-verity hash tree');
      const verity = await appendHashTreeInPlace(image, {
        hashAlgorithm: recipe.system.verity.hashAlgorithm,
        dataBlockSize: recipe.system.verity.dataBlockSize,
        hashBlockSize: recipe.system.verity.hashBlockSize,
        saltLabel: 'system',
      });
      await writeFile(path.join(outputDir, VERITY_FILE), `${JSON.stringify(verityRecord(verity), null, 2)}\n`);
    },
  };
}
