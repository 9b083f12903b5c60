import { execa } from 'execa';
import { HOST_TOOLS, type HostTool } from '../../core/host-tools.js';
import { formatTable, parseCommandArgs, printJson, type Command } from '../command.js';

interface ToolStatus {
  command: string;
  found: boolean;
  version: string | null;
  debianPackage: string;
  purpose: string;
}

/** Runs the tool's version command and returns its first non-empty line. */
async function probeTool(tool: HostTool): Promise<ToolStatus> {
  const base = { command: tool.command, debianPackage: tool.debianPackage, purpose: tool.purpose };
  const located = await execa('sh', ['-c', 'command -v "$1"', 'sh', tool.command], { reject: false });
  if (located.exitCode !== 0) return { ...base, found: false, version: null };

  // The Debian package version is exact and uniform; some programs (img2simg)
  // have no version option at all.
  const packaged = await execa('dpkg-query', ['-W', '-f=${Version}', tool.debianPackage], { reject: false });
  if (packaged.exitCode === 0 && packaged.stdout) return { ...base, found: true, version: `${tool.debianPackage} ${packaged.stdout}` };

  const result = await execa(tool.command, tool.versionArgs, { reject: false, all: true, timeout: 10_000 });
  const firstLine = String(result.all ?? '').split('\n').map((line) => line.trim()).find((line) => line.length > 0);
  return { ...base, found: true, version: firstLine ?? 'unknown' };
}

export const doctorCommand: Command = {
  name: ['doctor'],
  summary: 'check the host tools the build needs',
  help: `Usage: qwamos-build doctor [--json]

Checks every host program the build and its tests run: found or missing,
its version, and the Debian package that provides it. Exits 1 when any
program is missing; ci/setup.sh installs them all.

Options:
  --json    print the result as JSON`,

  async run(argv) {
    const { values } = parseCommandArgs('doctor', argv, { json: { type: 'boolean' } });
    const statuses = await Promise.all(HOST_TOOLS.map(probeTool));
    const missing = statuses.filter((status) => !status.found);

    if (values.json) {
      printJson({ ok: missing.length === 0, tools: statuses });
    } else {
      const rows = statuses.map((status) => [status.command, status.found ? 'found' : 'MISSING', (status.version ?? '-').slice(0, 50), status.debianPackage]);
      process.stdout.write(`${formatTable(['TOOL', 'STATUS', 'VERSION', 'DEBIAN PACKAGE'], rows)}\n`);
      if (missing.length > 0) {
        const packages = [...new Set(missing.map((status) => status.debianPackage))].join(' ');
        process.stdout.write(`\n${missing.length} missing; install with: apt-get install ${packages}\n`);
      }
    }
    return missing.length === 0 ? 0 : 1;
  },
};
