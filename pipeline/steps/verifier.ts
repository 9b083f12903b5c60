/** Step verifier: the static qwamos-verify program for the image's architecture. */
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from '../../core/schema.js';
import { buildVerifier, pqcleanSourceDir } from '../../signing/verifier-build.js';
import type { Step } from '../step.js';
import { toolVersion } from '../tool-versions.js';

export const VERIFIER_FILE = 'qwamos-verify';

export function verifierStep(): Step {
  return {
    id: 'verifier',
    dependsOn: [],
    version: 1,
    inputs: async () => ({
      trees: { verifier: path.join(REPO_ROOT, 'verifier'), pqclean: pqcleanSourceDir() },
      tools: { 'aarch64-linux-gnu-gcc': await toolVersion('aarch64-linux-gnu-gcc'), make: await toolVersion('make') },
    }),
    async run({ outputDir, logFile }) {
      const built = await buildVerifier({ target: 'aarch64', outDir: path.join(outputDir, '.build'), logFile });
      await rename(built, path.join(outputDir, VERIFIER_FILE));
      await rm(path.join(outputDir, '.build'), { recursive: true, force: true });
    },
  };
}
