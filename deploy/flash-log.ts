/**
 * The flash session log: every fastboot or heimdall invocation, its full
 * output and its exit status, appended to one file per session so that a
 * failed flash can be reconstructed afterwards. The log contains commands,
 * file paths and device responses, and the tools print no key material.
 */
import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { isQwamosError } from '../core/errors.js';
import { runTool } from '../core/exec.js';

export class FlashLog {
  private constructor(readonly path: string) {}

  /** Creates the log's folder and appends a session header to the file. */
  static async open(file: string, title: string): Promise<FlashLog> {
    await mkdir(path.dirname(file), { recursive: true });
    const log = new FlashLog(file);
    await log.note(`${title} started ${new Date().toISOString()}`);
    return log;
  }

  /** Appends one line, prefixed with '# ' to set it apart from tool output. */
  async note(text: string): Promise<void> {
    await appendFile(this.path, `# ${text}\n`);
  }
}

/** Returns DIR/logs/flash-YYYYMMDDTHHMMSSZ.log for a session starting at `now`. */
export function defaultFlashLogPath(dir: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return path.join(dir, 'logs', `flash-${stamp}.log`);
}

/** Output of one logged tool invocation. */
export interface LoggedRun {
  /** The tool exited with status 0. */
  exited: boolean;
  /** stdout and stderr lines, in order. */
  lines: string[];
  timedOut: boolean;
  /** runTool's message when the tool failed, such as "heimdall exited with status 1". */
  error?: string;
}

/**
 * Runs `program argv` through runTool, appending the command line and all
 * output to the log. A failing exit or a timeout is returned, not thrown,
 * so the caller can name the failed step. A missing program still throws
 * TOOL_MISSING with its Debian package.
 */
export async function runLogged(program: string, argv: readonly string[], log: FlashLog, timeoutMs: number, onLine?: (line: string) => void): Promise<LoggedRun> {
  const lines: string[] = [];
  const collect = (line: string): void => {
    lines.push(line);
    onLine?.(line);
  };
  try {
    await runTool(program, argv, { logFile: log.path, onLine: collect, timeoutMs });
    return { exited: true, lines, timedOut: false };
  } catch (error) {
    if (!isQwamosError(error, 'COMMAND_FAILED')) throw error;
    const timedOut = /timed out after/.test(error.message);
    await log.note(`${error.message}`);
    return { exited: false, lines, timedOut, error: error.message };
  }
}
