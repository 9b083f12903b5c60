/**
 * Runs host programs through execa with the error handling every caller
 * needs: a missing program names its Debian package, and a failing program
 * reports its exit status and the last lines of its output.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { execa, type Options } from 'execa';
import { QwamosError } from './errors.js';
import { debianPackageFor } from './host-tools.js';

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Input written to the program's standard input. */
  input?: string | Uint8Array;
  /** Appends stdout and stderr to this log file instead of capturing them. */
  logFile?: string;
  /** Called with each output line, for progress display. */
  onLine?: (line: string) => void;
  /** Milliseconds before the program is killed. */
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Number of output lines shown when a program fails. */
const TAIL_LINES = 20;

export async function runTool(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const log: WriteStream | undefined = options.logFile ? createWriteStream(options.logFile, { flags: 'a' }) : undefined;
  const tail: string[] = [];
  const collect = (line: string): void => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
    log?.write(`${line}\n`);
    options.onLine?.(line);
  };

  const streaming = log !== undefined || options.onLine !== undefined;
  const lineHandler = function* (line: unknown): Generator<never, void, unknown> { collect(String(line)); };
  const execaOptions: Options = {
    ...(streaming ? { stdout: [lineHandler], stderr: [lineHandler] } : {}),
    cwd: options.cwd,
    env: options.env,
    input: options.input,
    timeout: options.timeoutMs,
    reject: false,
    all: true,
    lines: false,
    stripFinalNewline: true,
    encoding: 'utf8',
  };
  log?.write(`$ ${command} ${args.join(' ')}\n`);
  const result = await execa(command, args, execaOptions);
  await new Promise<void>((resolve) => (log ? log.end(resolve) : resolve()));

  if ((result as { code?: string }).code === 'ENOENT' || (result.failed && /ENOENT/.test(String(result.message)) && result.exitCode === undefined)) {
    const debianPackage = debianPackageFor(command);
    const fix = debianPackage ? `install it with: apt-get install ${debianPackage}` : 'install it and make sure it is on PATH';
    throw new QwamosError('TOOL_MISSING', `${command} is not installed; ${fix}`, { data: { tool: command, debianPackage } });
  }

  if (result.failed) {
    const lines = tail.length > 0 ? tail : String(result.all ?? '').split('\n').slice(-TAIL_LINES);
    const why = result.timedOut ? `timed out after ${options.timeoutMs} ms` : `exited with status ${result.exitCode ?? result.signal}`;
    throw new QwamosError('COMMAND_FAILED', `${command} ${why}`, {
      details: lines,
      data: { tool: command, args: [...args], exitCode: result.exitCode },
    });
  }

  return { stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
}

/** Returns true when `command` is on PATH. */
export async function hasTool(command: string): Promise<boolean> {
  const result = await execa('sh', ['-c', `command -v "$1"`, 'sh', command], { reject: false });
  return result.exitCode === 0;
}
