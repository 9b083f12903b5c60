/**
 * Host programs that qwamos-build runs, with the Debian 12 package that
 * provides each one. `doctor` reports this table and `runTool` uses it to
 * name the package when a program is missing.
 */

export interface HostTool {
  /** Program name as found on PATH. */
  command: string;
  /** Debian package that installs it. */
  debianPackage: string;
  /** Arguments that make the program print its version. */
  versionArgs: string[];
  /** Purpose of the program in the build or its tests. */
  purpose: string;
}

export const HOST_TOOLS: readonly HostTool[] = [
  { command: 'apt-get', debianPackage: 'apt', versionArgs: ['--version'], purpose: 'download pinned Debian packages' },
  { command: 'dpkg-deb', debianPackage: 'dpkg', versionArgs: ['--version'], purpose: 'unpack downloaded .deb files' },
  { command: 'apt-cache', debianPackage: 'apt', versionArgs: ['--version'], purpose: 'resolve pinned Debian package versions and digests' },
  { command: 'dpkg', debianPackage: 'dpkg', versionArgs: ['--version'], purpose: 'read the host architecture' },
  { command: 'apt-config', debianPackage: 'apt', versionArgs: ['--version'], purpose: "test: find the host's APT package lists folder" },
  { command: 'sha256sum', debianPackage: 'coreutils', versionArgs: ['--version'], purpose: 'test: reference SHA-256 of downloaded files' },
  { command: 'sha512sum', debianPackage: 'coreutils', versionArgs: ['--version'], purpose: 'test: reference SHA-512 of stage images' },
  { command: 'readelf', debianPackage: 'binutils', versionArgs: ['--version'], purpose: 'test: reference ELF header reader' },
  { command: 'tar', debianPackage: 'tar', versionArgs: ['--version'], purpose: 'extract the kernel source' },
  { command: 'xz', debianPackage: 'xz-utils', versionArgs: ['--version'], purpose: 'decompress the kernel source tarball' },
  { command: 'make', debianPackage: 'make', versionArgs: ['--version'], purpose: 'run the kernel build' },
  { command: 'nice', debianPackage: 'coreutils', versionArgs: ['--version'], purpose: 'run the kernel build at a lower CPU priority' },
  { command: 'gcc', debianPackage: 'gcc', versionArgs: ['--version'], purpose: 'build kernel host programs' },
  { command: 'aarch64-linux-gnu-gcc', debianPackage: 'gcc-aarch64-linux-gnu', versionArgs: ['--version'], purpose: 'cross-compile the arm64 kernel' },
  { command: 'bison', debianPackage: 'bison', versionArgs: ['--version'], purpose: 'kernel Kconfig parser generator' },
  { command: 'flex', debianPackage: 'flex', versionArgs: ['--version'], purpose: 'kernel Kconfig lexer generator' },
  { command: 'bc', debianPackage: 'bc', versionArgs: ['--version'], purpose: 'kernel build arithmetic' },
  { command: 'mkfs.erofs', debianPackage: 'erofs-utils', versionArgs: ['--version'], purpose: 'create the EROFS system image' },
  { command: 'veritysetup', debianPackage: 'cryptsetup-bin', versionArgs: ['--version'], purpose: 'check dm-verity hash trees' },
  { command: 'fsck.erofs', debianPackage: 'erofs-utils', versionArgs: ['-V'], purpose: 'test: extract EROFS images with the reference tool' },
  { command: 'dump.erofs', debianPackage: 'erofs-utils', versionArgs: ['-V'], purpose: 'test: read EROFS superblocks and inodes' },
  { command: 'gzip', debianPackage: 'gzip', versionArgs: ['--version'], purpose: 'test: check the compressed initramfs' },
  { command: 'gunzip', debianPackage: 'gzip', versionArgs: ['--version'], purpose: 'test: decompress the initramfs with the reference tool' },
  { command: 'setfattr', debianPackage: 'attr', versionArgs: ['--version'], purpose: 'test: set host xattrs that EROFS images must not copy' },
  { command: 'qemu-system-aarch64', debianPackage: 'qemu-system-arm', versionArgs: ['--version'], purpose: 'boot-test arm64 images' },
  { command: 'cpio', debianPackage: 'cpio', versionArgs: ['--version'], purpose: 'test: extract the initramfs with the reference tool' },
  { command: 'mkbootimg', debianPackage: 'mkbootimg', versionArgs: ['--help'], purpose: 'test: reference Android boot image writer' },
  { command: 'img2simg', debianPackage: 'android-sdk-libsparse-utils', versionArgs: [], purpose: 'test: reference sparse image writer' },
  { command: 'unpack_bootimg', debianPackage: 'mkbootimg', versionArgs: ['--help'], purpose: 'test: reference Android boot image reader' },
  { command: 'simg2img', debianPackage: 'android-sdk-libsparse-utils', versionArgs: [], purpose: 'test: reference sparse image reader' },
  { command: 'fastboot', debianPackage: 'fastboot', versionArgs: ['--version'], purpose: 'flash phones over USB or TCP' },
  { command: 'heimdall', debianPackage: 'heimdall-flash', versionArgs: ['version'], purpose: 'flash Samsung phones in Download mode' },
  { command: 'openssl', debianPackage: 'openssl', versionArgs: ['version'], purpose: 'test: reference parser and checker for key files and RSA signatures' },
];

/** Looks up the Debian package for a command, for error messages. */
export function debianPackageFor(command: string): string | undefined {
  return HOST_TOOLS.find((tool) => tool.command === command)?.debianPackage;
}
