/** Shared helpers for the kernel tests: temporary folders and small file trees. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';
import { QwamosError } from '../../core/errors.js';

const created: string[] = [];

/** Creates a temporary folder that is removed after the current test. */
export async function temporaryFolder(prefix = 'qwamos-kernel-test-'): Promise<string> {
  const folder = await mkdtemp(path.join(os.tmpdir(), prefix));
  created.push(folder);
  return folder;
}

afterEach(async () => {
  while (created.length > 0) await rm(created.pop()!, { recursive: true, force: true });
});

/** Writes each `relative path -> text` entry below `root`. */
export async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [relativePath, text] of Object.entries(files)) {
    const filePath = path.join(root, relativePath);
    await mkdir(path.dirname(filePath), { recursive: true });
    await writeFile(filePath, text);
  }
}

/** Joins lines with newlines and a final newline. */
export function lines(...text: string[]): string {
  return `${text.join('\n')}\n`;
}

/** Runs `action` and returns the error it throws; fails the test when it does not throw. */
export async function captureError(action: () => unknown): Promise<QwamosError> {
  try {
    await action();
  } catch (error) {
    if (error instanceof QwamosError) return error;
    throw error;
  }
  throw new Error('expected a QwamosError, but nothing was thrown');
}
