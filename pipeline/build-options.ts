/** Options shared by the host and phone builds, and the set-up both do. */
import type { GraphOptions } from './graph.js';
import { fetchInput } from './fetch-apt.js';
import type { LockedInput } from './lockfile.js';
import { setUpSigning, type SigningSetup } from './signing-setup.js';

export interface BuildOptions {
  device: string;
  /** Key store folder; default: dev keys in the cache, created on first use. */
  keysDir?: string;
  /** Rejects dev keys. */
  release?: boolean;
  /** External signing program for the ML-DSA-87 stages. */
  signerCommand?: string;
  rollbackIndex?: number;
  /** Signs an index below the ledger's last one; dev keys only. */
  allowRollback?: boolean;
  onDevKeysCreated?(dir: string): void;
  recipeFile: string;
  outDir: string;
  cacheDir: string;
  lockfilePath: string;
  offline: boolean;
  noCache?: boolean;
  events?: Pick<GraphOptions, 'onStepStart' | 'onProgress' | 'onStepDone'>;
  /** Receives one line for each input download. */
  onFetch?(message: string): void;
}

/** Returns a memoized function that fetches and verifies one pinned input. */
export function lazyFetch(input: LockedInput, options: BuildOptions): () => Promise<string> {
  let fetched: Promise<string> | undefined;
  return () => {
    fetched ??= fetchInput(input, { cacheDir: options.cacheDir, offline: options.offline, ...(options.onFetch ? { onProgress: options.onFetch } : {}) });
    return fetched;
  };
}

/** Loads or creates the key store the build options name. */
export function signingFor(options: BuildOptions): Promise<SigningSetup> {
  return setUpSigning({
    cacheDir: options.cacheDir,
    release: options.release ?? false,
    ...(options.keysDir ? { keysDir: options.keysDir } : {}),
    ...(options.signerCommand ? { signerCommand: options.signerCommand } : {}),
    ...(options.onDevKeysCreated ? { onDevKeysCreated: options.onDevKeysCreated } : {}),
  });
}
