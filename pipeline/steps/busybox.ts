/** Step busybox: takes the static busybox binary out of the pinned package. */
import path from 'node:path';
import { extractDebMember } from '../deb.js';
import type { LockedInput } from '../lockfile.js';
import type { Step } from '../step.js';

export function busyboxStep(input: LockedInput, debPath: () => Promise<string>): Step {
  return {
    id: 'busybox',
    dependsOn: [],
    version: 1,
    inputs: async () => ({ digests: { [input.name]: input.sha256 } }),
    async run({ outputDir }) {
      await extractDebMember(await debPath(), 'bin/busybox', path.join(outputDir, 'busybox'));
    },
  };
}
