import path from 'node:path';
import { QwamosError } from '../../core/errors.js';
import { REPO_ROOT } from '../../core/schema.js';
import { runBootTest } from '../../deploy/boot-test.js';
import { resolveCacheDir } from '../../pipeline/download-cache.js';
import { buildHostImage, type HostBuildResult } from '../../pipeline/host-build.js';
import { LOCKFILE_NAME } from '../../pipeline/lockfile.js';
import { BOOT_TEST_TIMEOUT_SECONDS, printBootTestResult } from './boot-test.js';
import { formatTable, parseCommandArgs, printJson, type Command } from '../command.js';
import { createProgressReporter } from '../progress.js';

const DEFAULT_DEVICE = 'qemu-virt-arm64';
const DEFAULT_RECIPE = path.join('recipes', 'host.yaml');

function parseRollbackIndex(value: string | undefined): number {
  if (value === undefined) return 0;
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new QwamosError('USAGE', `build: --rollback-index must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER}, got '${value}'`);
  }
  return Number(value);
}

function printSummary(result: HostBuildResult): void {
  const rows = result.results.map((step) => [step.id, step.status, `${(step.durationMs / 1000).toFixed(1)} s`]);
  const total = result.results.reduce((sum, step) => sum + step.durationMs, 0);
  process.stdout.write(`${formatTable(['STEP', 'STATUS', 'DURATION'], rows)}\n`);
  process.stdout.write(`total ${(total / 1000).toFixed(1)} s; output in ${result.outDir}\n`);
}

export const buildCommand: Command = {
  name: ['build'],
  summary: 'build the images for a device profile',
  help: `Usage: qwamos-build build [--device D] [--recipe R] [--out DIR] [OPTIONS]

Builds the images for device D from the recipe R. For qemu-virt-arm64: the
kernel from the pinned Debian source, the initramfs, and the EROFS system
image with its dm-verity hash tree. For phone profiles: boot, init_boot and
vendor_boot images, the system image with an AVB hashtree footer, vbmeta,
avb_custom_key and sparse images, from a kernel given with --kernel. Every
stage is signed (ML-DSA-87 manifests, AVB). Every step is cached under a key computed from its
inputs, so a rebuild reruns only what changed. Ends with one line per step
(run or cached, and its duration).

Options:
  --device D        device profile in device-profiles/ (default ${DEFAULT_DEVICE})
  --recipe R        recipe file (default ${DEFAULT_RECIPE})
  --out DIR         output folder (default out/<device>)
  --kernel IMAGE    prebuilt kernel Image, for phone profiles whose kernel source
                    is not pinned here
  --offline         use only the download cache; fail naming any missing input
  --cache-dir DIR   cache folder (default $QWAMOS_CACHE_DIR, else ~/.cache/qwamos-build)
  --lockfile FILE   pinned inputs (default ${LOCKFILE_NAME} in the repository)
  --keys DIR        key store to sign with (default: dev keys in the cache folder,
                    created on first use; see 'qwamos-build keys generate')
  --release         reject dev keys; needs --keys with release keys
  --signer COMMAND  sign the ML-DSA-87 stages through an external program (HSM,
                    offline machine); see docs/keys.md for its arguments
  --rollback-index N
                    anti-rollback index written into every stage (default 0); the
                    ledger beside the keys rejects one below the last signed
  --allow-rollback  sign an index below the last one (dev keys only)
  --no-cache        rerun every step even when a cached output exists
  --boot-test       boot the result in QEMU afterwards, as 'qwamos-build boot-test' does
  --quiet           print no progress lines
  --json            print the summary, with each output's path, size and SHA-256, as JSON`,

  async run(argv) {
    const { values } = parseCommandArgs('build', argv, {
      device: { type: 'string', default: DEFAULT_DEVICE },
      recipe: { type: 'string', default: DEFAULT_RECIPE },
      out: { type: 'string' },
      kernel: { type: 'string' },
      offline: { type: 'boolean', default: false },
      'cache-dir': { type: 'string' },
      lockfile: { type: 'string' },
      'no-cache': { type: 'boolean', default: false },
      'boot-test': { type: 'boolean', default: false },
      keys: { type: 'string' },
      release: { type: 'boolean', default: false },
      signer: { type: 'string' },
      'rollback-index': { type: 'string' },
      'allow-rollback': { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    });

    const reporter = createProgressReporter(process.stderr, values.quiet || values.json);
    const result = await buildHostImage({
      device: values.device,
      recipeFile: values.recipe,
      outDir: path.resolve(values.out ?? path.join('out', values.device)),
      cacheDir: resolveCacheDir(values['cache-dir']),
      lockfilePath: values.lockfile ?? path.join(REPO_ROOT, LOCKFILE_NAME),
      offline: values.offline,
      noCache: values['no-cache'],
      release: values.release,
      ...(values.kernel ? { kernelImage: values.kernel } : {}),
      rollbackIndex: parseRollbackIndex(values['rollback-index']),
      allowRollback: values['allow-rollback'],
      ...(values.keys ? { keysDir: values.keys } : {}),
      ...(values.signer ? { signerCommand: values.signer } : {}),
      onDevKeysCreated: (dir) => process.stderr.write(`created development keys in ${dir}; they are for development only and 'build --release' rejects them\n`),
      events: reporter,
      onFetch: reporter.onFetch,
    });

    if (!values.json) printSummary(result);
    const bootTest = values['boot-test'] ? await runBootTest(result.outDir, { timeoutSeconds: BOOT_TEST_TIMEOUT_SECONDS }) : undefined;
    if (bootTest && !values.json) printBootTestResult(bootTest);

    if (values.json) {
      printJson({
        ok: bootTest?.passed ?? true,
        outDir: result.outDir,
        steps: result.record.steps,
        outputs: result.record.outputs.map((output) => ({ ...output, path: path.join(result.outDir, output.name) })),
        ...(bootTest ? { bootTest } : {}),
      });
    }
    return bootTest && !bootTest.passed ? 1 : 0;
  },
};
