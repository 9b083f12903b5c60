/**
 * Step kernel: configures the extracted source with the profile's base
 * config and fragments, checks the result, and compiles the boot image in
 * an out-of-tree build folder that is discarded afterwards.
 */
import { availableParallelism } from 'node:os';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { compileKernel, configureKernel, defaultFragmentPaths, defaultRulesPath } from '../../kernel/index.js';
import type { DeviceProfile } from '../profiles.js';
import { REPO_ROOT } from '../../core/schema.js';
import type { Step } from '../step.js';
import { toolVersion } from '../tool-versions.js';
import { KERNEL_SOURCE_DIR } from './kernel-source.js';

export const KERNEL_CONFIG_FILE = 'kernel.config';
export const KERNEL_RELEASE_FILE = 'kernel.release';

/** Fragment files in merge order: the shared fragments, then the profile's own. */
export function kernelFragmentPaths(profile: DeviceProfile): string[] {
  const paths = defaultFragmentPaths(profile.kernel.fragments);
  if (profile.kernel.profileFragment) paths.push(path.resolve(REPO_ROOT, profile.kernel.profileFragment));
  return paths;
}

export function kernelStep(profile: DeviceProfile, epoch: number): Step {
  const fragments = kernelFragmentPaths(profile);
  const compiler = `${profile.kernel.crossCompile}gcc`;

  return {
    id: 'kernel',
    dependsOn: ['kernel-source'],
    version: 1,
    inputs: async () => ({
      files: { ...Object.fromEntries(fragments.map((fragment, index) => [`fragment-${index}`, fragment])), rules: defaultRulesPath() },
      config: { arch: profile.arch, baseConfig: profile.kernel.baseConfig, crossCompile: profile.kernel.crossCompile, target: profile.kernel.imageTarget, epoch },
      tools: { [compiler]: await toolVersion(compiler), make: await toolVersion('make') },
    }),
    async run({ outputDir, dependencies, logFile, progress }) {
      const buildDir = path.join(outputDir, '.build');
      const tree = {
        sourceDir: path.join(dependencies['kernel-source']!, KERNEL_SOURCE_DIR),
        buildDir,
        arch: profile.arch,
        crossCompile: profile.kernel.crossCompile,
        logFile,
        onLine: (line: string) => progress(line.trim()),
      };

      await mkdir(buildDir);
      progress(`configuring: ${profile.kernel.baseConfig} + ${profile.kernel.fragments.join(', ')}`);
      await configureKernel({ ...tree, baseConfig: profile.kernel.baseConfig, fragments, rules: defaultRulesPath() });

      const result = await compileKernel({ ...tree, jobs: availableParallelism(), sourceDateEpoch: epoch, target: profile.kernel.imageTarget });
      await copyFile(result.imagePath, path.join(outputDir, profile.kernel.imageTarget));
      await copyFile(result.configPath, path.join(outputDir, KERNEL_CONFIG_FILE));
      await writeFile(path.join(outputDir, KERNEL_RELEASE_FILE), `${result.kernelRelease}\n`);
      await rm(buildDir, { recursive: true });
    },
  };
}
