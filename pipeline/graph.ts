/**
 * Runs a graph of steps in dependency order. Each step's output folder is
 * cached under a key computed from its inputs (file digests, settings, tool
 * versions) and the keys of the steps it depends on, so changing one input
 * reruns exactly the steps downstream of it.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { produceAtomic } from '../core/atomic.js';
import { QwamosError, isQwamosError } from '../core/errors.js';
import { readCacheEntry, recordOutputs, removeStaleTemporaries, stepEntryDir, writeCacheMeta } from './cache.js';
import { canonicalJson, sha256File, sha256Hex, sha256Tree } from './digest.js';
import type { Step, StepInputs, StepResult } from './step.js';

export interface GraphOptions {
  cacheDir: string;
  /** Reruns every step even when a cache entry exists. */
  noCache?: boolean;
  /** Called when a step starts running (not for cache hits). */
  onStepStart?(step: Step): void;
  /** Called with progress text from a running step. */
  onProgress?(step: Step, message: string): void;
  onStepDone?(result: StepResult): void;
}

/** Orders steps so that every step comes after its dependencies. */
export function orderSteps(steps: Step[]): Step[] {
  const byId = new Map<string, Step>();
  for (const step of steps) {
    if (byId.has(step.id)) throw new QwamosError('INPUT_INVALID', `the build graph has two steps named '${step.id}'`);
    byId.set(step.id, step);
  }

  const ordered: Step[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (step: Step, chain: string[]): void => {
    if (state.get(step.id) === 'done') return;
    if (state.get(step.id) === 'visiting') {
      throw new QwamosError('INPUT_INVALID', `the build graph has a cycle: ${[...chain, step.id].join(' -> ')}`);
    }
    state.set(step.id, 'visiting');
    for (const dependencyId of step.dependsOn) {
      const dependency = byId.get(dependencyId);
      if (!dependency) throw new QwamosError('INPUT_INVALID', `step '${step.id}' depends on '${dependencyId}', which is not in the build graph`);
      visit(dependency, [...chain, step.id]);
    }
    state.set(step.id, 'done');
    ordered.push(step);
  };

  for (const step of steps) visit(step, []);
  return ordered;
}

/** Computes the cache key of a step and the material it was computed from. */
export async function computeStepKey(step: Step, inputs: StepInputs, dependencyKeys: Record<string, string>): Promise<{ key: string; material: unknown }> {
  const files: Record<string, string> = {};
  for (const [role, file] of Object.entries(inputs.files ?? {})) files[role] = await digestInputFile(step, role, file);

  const trees: Record<string, string> = {};
  for (const [role, folder] of Object.entries(inputs.trees ?? {})) trees[role] = await sha256Tree(folder);

  const material = {
    step: step.id,
    version: step.version,
    files,
    trees,
    digests: inputs.digests ?? {},
    config: inputs.config ?? {},
    tools: inputs.tools ?? {},
    dependencies: dependencyKeys,
  };
  return { key: sha256Hex(canonicalJson(material)), material };
}

async function digestInputFile(step: Step, role: string, file: string): Promise<string> {
  try {
    return await sha256File(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new QwamosError('INPUT_NOT_FOUND', `step '${step.id}': input '${role}' not found: ${file}`);
    }
    throw error;
  }
}

/** Runs every step, reusing cache entries, and returns the results in order. */
export async function runGraph(steps: Step[], options: GraphOptions): Promise<StepResult[]> {
  const results = new Map<string, StepResult>();

  for (const step of orderSteps(steps)) {
    const dependencyKeys: Record<string, string> = {};
    const dependencyDirs: Record<string, string> = {};
    for (const dependencyId of step.dependsOn) {
      const dependency = results.get(dependencyId)!;
      dependencyKeys[dependencyId] = dependency.key;
      dependencyDirs[dependencyId] = dependency.outputDir;
    }

    const result = await runStep(step, dependencyKeys, dependencyDirs, options);
    results.set(step.id, result);
    options.onStepDone?.(result);
  }

  return [...results.values()];
}

async function runStep(step: Step, dependencyKeys: Record<string, string>, dependencyDirs: Record<string, string>, options: GraphOptions): Promise<StepResult> {
  const started = Date.now();
  const { key, material } = await computeStepKey(step, await step.inputs(), dependencyKeys);
  const entryDir = stepEntryDir(options.cacheDir, step.id, key);

  const cached = options.noCache ? undefined : await readCacheEntry(entryDir);
  if (cached) {
    return { id: step.id, key, status: 'cached', durationMs: Date.now() - started, outputDir: path.join(entryDir, 'outputs'), outputs: cached.outputs, logFile: path.join(entryDir, 'step.log') };
  }

  await removeStaleTemporaries(options.cacheDir, step.id);
  options.onStepStart?.(step);

  const outputs = await produceAtomic(entryDir, async (temporary) => {
    const outputDir = path.join(temporary, 'outputs');
    const logFile = path.join(temporary, 'step.log');
    await mkdir(outputDir, { recursive: true });

    try {
      await step.run({ outputDir, dependencies: dependencyDirs, logFile, progress: (message) => options.onProgress?.(step, message) });
    } catch (error) {
      throw await keepFailedLog(error, step, logFile, options.cacheDir);
    }

    const records = step.outputKind === 'tree' ? [] : await recordOutputs(outputDir);
    await writeCacheMeta(temporary, { step: step.id, key, keyMaterial: material, outputs: records, durationMs: Date.now() - started });
    return records;
  });

  return { id: step.id, key, status: 'run', durationMs: Date.now() - started, outputDir: path.join(entryDir, 'outputs'), outputs, logFile: path.join(entryDir, 'step.log') };
}

/**
 * Copies a failed step's log out of the temporary entry (which is removed)
 * to CACHE/failed/STEP.log and names it in the error.
 */
async function keepFailedLog(error: unknown, step: Step, logFile: string, cacheDir: string): Promise<unknown> {
  const kept = path.join(cacheDir, 'failed', `${step.id}.log`);
  await mkdir(path.dirname(kept), { recursive: true });
  const copied = await copyFile(logFile, kept).then(() => true, () => false);
  if (!copied) return error;

  if (isQwamosError(error)) {
    error.details.push(`full log of step '${step.id}': ${kept}`);
    error.data.logFile = kept;
    return error;
  }
  return new QwamosError('COMMAND_FAILED', `step '${step.id}' failed: ${error instanceof Error ? error.message : String(error)}`, { details: [`full log: ${kept}`], cause: error });
}
