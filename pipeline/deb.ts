/**
 * Reading Debian binary packages (.deb) with dpkg-deb: the control fields
 * that identify a package, and single files from its data archive.
 */
import { lstat, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { rethrowWriteError, temporaryPathFor } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';
import { runTool } from '../core/exec.js';

/** The control fields that identify a .deb. */
export interface DebIdentity {
  package: string;
  version: string;
  architecture: string;
}

/** Reads Package, Version and Architecture from the control file of a .deb. */
export async function readDebIdentity(debPath: string): Promise<DebIdentity> {
  const { stdout } = await runTool('dpkg-deb', ['--field', debPath, 'Package', 'Version', 'Architecture'], { env: { LC_ALL: 'C' } });

  const fields = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const match = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
    if (match?.[1] && match[2] !== undefined) fields.set(match[1], match[2].trim());
  }

  const identity = { package: fields.get('Package'), version: fields.get('Version'), architecture: fields.get('Architecture') };
  if (!identity.package || !identity.version || !identity.architecture) {
    throw new QwamosError('INPUT_INVALID', `${debPath} has no Package, Version or Architecture control field; expected a Debian binary package`, { data: { file: debPath } });
  }
  return { package: identity.package, version: identity.version, architecture: identity.architecture };
}

/**
 * Extracts one regular file from the data archive of a .deb to
 * `destination`. `memberPath` is the path inside the package, such as
 * `usr/src/linux-source-6.1.tar.xz` or `bin/busybox`; a leading `/` or
 * `./` is accepted. The whole data archive is unpacked with `dpkg-deb -x`
 * into a temporary folder beside `destination`, then the member is renamed
 * into place, so a failure leaves no partial destination.
 */
export async function extractDebMember(debPath: string, memberPath: string, destination: string): Promise<void> {
  const relativeMember = normalizeMemberPath(memberPath);
  await mkdir(path.dirname(destination), { recursive: true });
  const unpackFolder = `${temporaryPathFor(destination)}.unpack`;

  try {
    await runTool('dpkg-deb', ['-x', debPath, unpackFolder]);

    const unpackedMember = path.join(unpackFolder, relativeMember);
    const info = await lstat(unpackedMember).catch(() => undefined);
    if (!info) {
      throw new QwamosError('INPUT_NOT_FOUND', `${debPath} does not contain /${relativeMember}; list its files with 'dpkg-deb --contents ${debPath}'`, {
        data: { file: debPath, member: relativeMember },
      });
    }
    if (!info.isFile()) {
      throw new QwamosError('INPUT_INVALID', `/${relativeMember} in ${debPath} is not a regular file; expected the path of a regular file, not a folder or symbolic link`, {
        data: { file: debPath, member: relativeMember },
      });
    }

    await rename(unpackedMember, destination).catch((error: unknown) => rethrowWriteError(error, destination));
  } finally {
    await rm(unpackFolder, { recursive: true, force: true });
  }
}

/** Returns `memberPath` relative to the package root, rejecting paths that leave it. */
function normalizeMemberPath(memberPath: string): string {
  const relative = path.posix.normalize(memberPath.replace(/^\/+/, ''));
  if (relative === '.' || relative === '' || relative.startsWith('../') || relative === '..') {
    throw new QwamosError('INPUT_INVALID', `'${memberPath}' is not a file path inside a package; expected a path such as usr/src/linux-source-6.1.tar.xz`);
  }
  return relative;
}
