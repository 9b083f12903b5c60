/** Step kernel-source: unpacks the pinned Debian linux-source package. */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { runTool } from '../../core/exec.js';
import { extractDebMember } from '../deb.js';
import type { LockedInput } from '../lockfile.js';
import type { Step } from '../step.js';

/** Folder inside the step output that contains the source tree. */
export const KERNEL_SOURCE_DIR = 'linux';

/**
 * Debian's linux-source-X.Y ships usr/src/linux-source-X.Y.tar.xz, whose
 * single top folder is linux-source-X.Y.
 */
export function kernelSourceStep(input: LockedInput, debPath: () => Promise<string>): Step {
  const tarball = `usr/src/${input.package}.tar.xz`;

  return {
    id: 'kernel-source',
    dependsOn: [],
    version: 1,
    outputKind: 'tree',
    inputs: async () => ({ digests: { [input.name]: input.sha256 }, config: { tarball } }),
    async run({ outputDir, logFile, progress }) {
      const deb = await debPath();
      const tarballPath = path.join(outputDir, 'source.tar.xz');
      progress(`unpacking ${tarball} from ${path.basename(deb)}`);
      await extractDebMember(deb, tarball, tarballPath);

      const target = path.join(outputDir, KERNEL_SOURCE_DIR);
      await mkdir(target);
      progress(`extracting ${input.package} source`);
      // --strip-components drops the versioned top folder; --no-same-owner
      // and --no-same-permissions keep the tree owned by the user running the build.
      await runTool('tar', ['-xJf', tarballPath, '-C', target, '--strip-components=1', '--no-same-owner', '--no-same-permissions'], { logFile });
      await rm(tarballPath);
    },
  };
}
