/**
 * Locations of the data files that ship with qwamos-build: the rule file,
 * the config fragments and the JSON schemas. They are found from the package
 * root, so that the same code works from the TypeScript sources (tests) and
 * from the compiled `dist/` tree.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Fragment names in merge order; a later fragment overrides an earlier one. */
export const DEFAULT_FRAGMENT_NAMES = ['kvm', 'virtio', 'verity', 'erofs', 'console', 'initramfs', 'hardening'] as const;

/** Returns the nearest folder above this module that contains package.json. */
export function packageRoot(): string {
  let folder = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(folder, 'package.json'))) {
    const parent = path.dirname(folder);
    if (parent === folder) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    folder = parent;
  }
  return folder;
}

export function defaultRulesPath(): string {
  return path.join(packageRoot(), 'kernel-configs', 'rules.yaml');
}

export function kernelRulesSchemaPath(): string {
  return path.join(packageRoot(), 'schemas', 'kernel-rules.schema.json');
}

/** Paths of the shipped fragments (`kernel-configs/fragments/<name>.config`) in merge order. */
export function defaultFragmentPaths(names: readonly string[] = DEFAULT_FRAGMENT_NAMES): string[] {
  return names.map((name) => path.join(packageRoot(), 'kernel-configs', 'fragments', `${name}.config`));
}
