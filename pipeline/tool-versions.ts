/** Versions of host programs, for cache keys: a new compiler means a new output. */
import { runTool } from '../core/exec.js';

const versions = new Map<string, Promise<string>>();

/** Returns the first line the program prints for `--version`, memoized per process. */
export function toolVersion(command: string, args: string[] = ['--version']): Promise<string> {
  const memoKey = `${command} ${args.join(' ')}`;
  let version = versions.get(memoKey);
  if (!version) {
    version = runTool(command, args).then((result) => (result.stdout || result.stderr).split('\n')[0]!.trim());
    versions.set(memoKey, version);
  }
  return version;
}
