/**
 * Publishes a build: the chosen step outputs, boot.json and build.json are
 * assembled in a temporary folder beside the output folder, which then
 * replaces it in one rename. An interrupted build leaves the previous
 * output folder intact.
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { produceAtomic } from '../core/atomic.js';
import { recordOutputs } from './cache.js';
import type { OutputRecord, StepResult } from './step.js';

export interface PublishedFile {
  /** Step that produced the file. */
  step: string;
  /** File name inside the step's output folder. */
  from: string;
  /** File name inside the published folder. */
  to: string;
}

/** The fields every build record has; builds add their own beside them. */
export interface BuildRecordHeader {
  formatVersion: 1;
  device: string;
  recipe: string;
  sourceDateEpoch: number;
}

export interface BuildRecord extends BuildRecordHeader {
  steps: { id: string; status: StepResult['status']; durationMs: number; key: string }[];
  outputs: OutputRecord[];
}

export const BUILD_RECORD_FILE = 'build.json';

/**
 * Copies the files into `outDir`, writes the extra documents (strings and
 * bytes as they are, other values as JSON), then
 * digests the folder and writes build.json last.
 */
export async function publishBuild(
  outDir: string,
  results: StepResult[],
  files: PublishedFile[],
  documents: Record<string, unknown>,
  record: BuildRecordHeader & Record<string, unknown>,
): Promise<BuildRecord> {
  const byId = new Map(results.map((result) => [result.id, result]));

  return produceAtomic(outDir, async (temporary) => {
    await mkdir(temporary, { recursive: true });
    for (const file of files) {
      await mkdir(path.dirname(path.join(temporary, file.to)), { recursive: true });
      await copyFile(path.join(byId.get(file.step)!.outputDir, file.from), path.join(temporary, file.to));
    }
    for (const [name, value] of Object.entries(documents)) {
      const target = path.join(temporary, name);
      await mkdir(path.dirname(target), { recursive: true });
      const raw = typeof value === 'string' || value instanceof Uint8Array;
      await writeFile(target, raw ? value : `${JSON.stringify(value, null, 2)}\n`);
    }

    const full: BuildRecord = {
      ...record,
      steps: results.map((result) => ({ id: result.id, status: result.status, durationMs: result.durationMs, key: result.key })),
      outputs: await recordOutputs(temporary),
    };
    await writeFile(path.join(temporary, BUILD_RECORD_FILE), `${JSON.stringify(full, null, 2)}\n`);
    return full;
  });
}
