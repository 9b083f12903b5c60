/**
 * A build step: a named unit of work with declared inputs, declared
 * dependencies on other steps, and output files written to a folder.
 */

/** Everything besides dependency outputs that a step's output depends on. */
export interface StepInputs {
  /** Input files by role name; their SHA-256 digests enter the cache key. */
  files?: Record<string, string>;
  /** Input folders by role name; a digest of the whole tree enters the key. */
  trees?: Record<string, string>;
  /** Precomputed digests, such as a lockfile's pinned SHA-256. */
  digests?: Record<string, string>;
  /** Settings (JSON values) that change the output. */
  config?: Record<string, unknown>;
  /** Versions of host programs that produce the output. */
  tools?: Record<string, string>;
}

export interface StepRunContext {
  /** Empty temporary folder the step writes its outputs into. */
  outputDir: string;
  /** Output folders of the dependencies, by step id. */
  dependencies: Record<string, string>;
  /** Log file of this step; tool output is appended here. */
  logFile: string;
  /** Shows a one-line progress message on a terminal. */
  progress(message: string): void;
}

export interface Step {
  id: string;
  /** Ids of the steps whose outputs this step reads. */
  dependsOn: string[];
  /**
   * Bumped when the step's code changes what it writes, so that cached
   * outputs of the old code are not reused.
   */
  version: number;
  /**
   * 'tree' marks an output folder too large to digest file by file (an
   * extracted kernel source); its identity is the cache key alone.
   */
  outputKind?: 'files' | 'tree';
  inputs(): Promise<StepInputs>;
  run(context: StepRunContext): Promise<void>;
}

export interface OutputRecord {
  /** Path relative to the step's output folder. */
  name: string;
  size: number;
  sha256: string;
}

export interface StepResult {
  id: string;
  key: string;
  status: 'run' | 'cached';
  durationMs: number;
  outputDir: string;
  outputs: OutputRecord[];
  logFile: string;
}
