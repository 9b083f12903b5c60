/** Image recipes: YAML files in recipes/ that list what goes into an image. */
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { loadYamlFile } from '../core/schema.js';

export interface Recipe {
  name: string;
  description?: string;
  sourceDateEpoch?: number;
  kernelCmdline?: string[];
  initramfs: { init: string; busyboxInput: string };
  system: {
    overlays: string[];
    verity: { hashAlgorithm: 'sha256'; dataBlockSize: 4096; hashBlockSize: 4096 };
  };
}

/** A recipe with its relative paths resolved against the recipe's folder. */
export interface LoadedRecipe extends Recipe {
  file: string;
  initPath: string;
  overlayPaths: string[];
}

export async function loadRecipe(file: string): Promise<LoadedRecipe> {
  const recipe = await loadYamlFile<Recipe>(file, 'recipe');
  const folder = path.dirname(path.resolve(file));
  return {
    ...recipe,
    file: path.resolve(file),
    initPath: path.resolve(folder, recipe.initramfs.init),
    overlayPaths: recipe.system.overlays.map((overlay) => path.resolve(folder, overlay)),
  };
}

/**
 * Returns the timestamp written into every image: SOURCE_DATE_EPOCH when set (the
 * reproducible-builds convention), else the recipe's value, else 0.
 */
export function sourceDateEpoch(recipe: Recipe, env: NodeJS.ProcessEnv = process.env): number {
  const fromEnv = env.SOURCE_DATE_EPOCH;
  if (fromEnv === undefined || fromEnv === '') return recipe.sourceDateEpoch ?? 0;
  if (!/^\d+$/.test(fromEnv)) {
    throw new QwamosError('INPUT_INVALID', `SOURCE_DATE_EPOCH '${fromEnv}' is not a whole number of seconds since 1970; set it to one, for example $(git log -1 --format=%ct), or unset it`);
  }
  return Number(fromEnv);
}
