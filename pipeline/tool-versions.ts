/** Versions of host programs, for cache keys: a new compiler means a new output. */
import { runTool } from '../core/exec.js';
import { debianPackageFor } from '../core/host-tools.js';

const versions = new Map<string, Promise<string>>();

/**
 * Returns the version of a host program, memoized per process: the Debian
 * package version for programs listed in core/host-tools.ts (exact, and
 * it works for programs such as mkfs.erofs 1.5 whose version option exits
 * with status 1), else the first line of `--version`. The program is run
 * once either way, so a missing program fails here with its package name.
 */
export function toolVersion(command: string): Promise<string> {
  let version = versions.get(command);
  if (!version) {
    version = lookUpVersion(command);
    versions.set(command, version);
  }
  return version;
}

async function lookUpVersion(command: string): Promise<string> {
  const debianPackage = debianPackageFor(command);
  if (debianPackage) {
    await runTool('sh', ['-c', 'command -v "$1" >/dev/null || exit 127', 'sh', command]).catch(async () => runTool(command, []));
    const result = await runTool('dpkg-query', ['-W', '-f=${Version}', debianPackage]);
    return `${debianPackage} ${result.stdout.trim()}`;
  }
  const result = await runTool(command, ['--version']);
  return (result.stdout || result.stderr).split('\n')[0]!.trim();
}
