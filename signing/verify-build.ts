/**
 * Offline check of a signed build output folder, with every check the boot
 * chain makes. These are the vbmeta's RSA signature and hash descriptors,
 * each stage manifest's ML-DSA-87 signature and signer, and the key chain
 * from the root key to the certified stage keys. Then come the public key
 * built into the initramfs, image digests, the dm-verity root, the
 * dm-verity table on the kernel command line, and rollback indexes against
 * a counter store. It reads the folder and the counter store and writes
 * nothing.
 *
 * The folder layout (build.json `chain`) is described in
 * signing/verify-build-layout.ts; each check's failure kinds in
 * signing/verify-build-row.ts.
 */
import { QwamosError } from '../core/errors.js';
import { readCounterStore } from './manifest-counters.js';
import { loadAvbKey, loadRootKey, loadStageKey, trustAnchorOf, type ChainKey, type TrustAnchor } from './verify-build-keys.js';
import { readBuildOutput, type ChainKeyRole } from './verify-build-layout.js';
import type { StageRow } from './verify-build-row.js';
import { checkManifestStage, type ChainContext } from './verify-build-stages.js';
import { checkVbmetaStage } from './verify-build-vbmeta.js';

export type { StageFailure, StageRow } from './verify-build-row.js';
export type { TrustAnchor } from './verify-build-keys.js';

export interface VerifyBuildOptions {
  /** Counter store file (format in docs/stage-manifest.md); without it the rollback checks are skipped. */
  countersPath?: string;
  /** Root public key (ML-DSA-87 SPKI PEM) to trust; default: the folder's own root key. */
  rootKeyPath?: string;
  /** AVB public key (blob or RSA PEM) to trust; default: the folder's own AVB key. */
  avbKeyPath?: string;
}

export interface VerifyBuildResult {
  /** True when every stage passed every check. */
  ok: boolean;
  /** One line per failed check: 'STAGE: REASON'. */
  failures: string[];
  /** vbmeta first when the build has one, then the stages in boot order. */
  stages: StageRow[];
  trustAnchor: TrustAnchor;
  rollback: { checked: false } | { checked: true; counters: string };
}

async function readCounters(countersPath: string): Promise<bigint[]> {
  try {
    return await readCounterStore(countersPath);
  } catch (error) {
    // A damaged store is bad input to this offline check, not a failed stage.
    if (error instanceof QwamosError && error.code === 'VERIFY_FAILED') {
      throw new QwamosError('INPUT_INVALID', `--counters ${countersPath}: ${String(error.data.reason ?? error.message)}; pass the counter store of the device`, { cause: error });
    }
    throw error;
  }
}

/**
 * Checks the build output folder `dir`. Returns one row per stage; `ok`
 * is false when any check failed. Throws INPUT_NOT_FOUND or INPUT_INVALID
 * (exit status 2) when `dir` is not a signed build output or an option
 * file cannot be read.
 */
export async function verifyBuildOutput(dir: string, options: VerifyBuildOptions = {}): Promise<VerifyBuildResult> {
  const build = await readBuildOutput(dir);
  const counters = options.countersPath === undefined ? undefined : await readCounters(options.countersPath);

  const root = await loadRootKey(build, options.rootKeyPath);
  const keys = new Map<ChainKeyRole, ChainKey>([
    ['root', root],
    ['system-stage', await loadStageKey(build, 'system-stage', root)],
    ['guest-stage', await loadStageKey(build, 'guest-stage', root)],
  ]);
  const avb = await loadAvbKey(build, options.avbKeyPath);

  const context: ChainContext = { build, keys, authentic: [], ...(counters ? { counters } : {}) };
  const stages: StageRow[] = [];
  const vbmetaRow = await checkVbmetaStage(context, avb);
  if (vbmetaRow) stages.push(vbmetaRow);
  for (let index = 0; index < build.chain.stages.length; index++) {
    stages.push(await checkManifestStage(context, index));
  }

  const failures = stages.flatMap((row) => row.failures.map((failure) => `${row.stage}: ${failure.reason}`));
  return {
    ok: failures.length === 0,
    failures,
    stages,
    trustAnchor: trustAnchorOf(root, options.rootKeyPath !== undefined, avb),
    rollback: options.countersPath === undefined ? { checked: false } : { checked: true, counters: options.countersPath },
  };
}
