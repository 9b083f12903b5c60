/**
 * Running the kernel's make in an out-of-tree build folder (`O=`), shared by
 * the configure and compile steps.
 */
import { runTool, type RunOptions } from '../core/exec.js';

export interface KernelTree {
  /** Extracted kernel source tree (contains the top-level Makefile and Kconfig). */
  sourceDir: string;
  /** Out-of-tree build folder, passed as O=. */
  buildDir: string;
  /** Kernel ARCH, such as `arm64`. Defaults to arm64. */
  arch?: string;
  /** Cross-compiler prefix; defaults to `aarch64-linux-gnu-` for arm64 and none otherwise. */
  crossCompile?: string;
  /** Step log file; make's output is appended to it. */
  logFile: string;
  /** Called with each output line of make, for progress display. */
  onLine?: (line: string) => void;
  /** Runs make under `nice -n <niceLevel>` when set. */
  niceLevel?: number;
}

/** Architectures whose source folder (SRCARCH) differs from ARCH, as in the kernel's top-level Makefile. */
const SOURCE_ARCHES: Record<string, string> = {
  i386: 'x86',
  x86_64: 'x86',
  sparc32: 'sparc',
  sparc64: 'sparc',
  parisc64: 'parisc',
};

export function kernelArch(tree: KernelTree): string {
  return tree.arch ?? 'arm64';
}

/** Returns the `arch/<name>` folder name for the tree's ARCH. */
export function sourceArch(tree: KernelTree): string {
  const arch = kernelArch(tree);
  return SOURCE_ARCHES[arch] ?? arch;
}

export function crossCompilePrefix(tree: KernelTree): string {
  if (tree.crossCompile !== undefined) return tree.crossCompile;
  return kernelArch(tree) === 'arm64' ? 'aarch64-linux-gnu-' : '';
}

/** Builds the make arguments that select the build folder, the architecture and the toolchain. */
export function makeArguments(tree: KernelTree, targets: readonly string[], extra: readonly string[] = []): string[] {
  return [
    `O=${tree.buildDir}`, // out-of-tree build: the source tree stays clean and can be shared
    `ARCH=${kernelArch(tree)}`,
    `CROSS_COMPILE=${crossCompilePrefix(tree)}`,
    ...extra,
    ...targets,
  ];
}

/** Runs make in the source tree with output appended to the step log. */
export async function runMake(tree: KernelTree, targets: readonly string[], options: { extra?: readonly string[]; env?: Record<string, string> } = {}): Promise<void> {
  const args = makeArguments(tree, targets, options.extra);
  const runOptions: RunOptions = {
    cwd: tree.sourceDir,
    logFile: tree.logFile,
    ...(options.env ? { env: options.env } : {}),
    ...(tree.onLine ? { onLine: tree.onLine } : {}),
  };

  if (tree.niceLevel === undefined) {
    await runTool('make', args, runOptions);
  } else {
    await runTool('nice', ['-n', String(tree.niceLevel), 'make', ...args], runOptions);
  }
}

/** Runs make and returns its standard output, for query targets such as `kernelrelease`. */
export async function queryMake(tree: KernelTree, target: string): Promise<string> {
  // -s: no "make[1]: Entering directory" lines around the output.
  const result = await runTool('make', ['-s', ...makeArguments(tree, [target])], { cwd: tree.sourceDir });
  return result.stdout.trim();
}

/**
 * Checks that make and the compilers are installed before a long step, so
 * that a missing tool is reported with its Debian package (through
 * runTool's TOOL_MISSING error) and not as a make failure. Kconfig needs the
 * cross-compiler too, because `$(cc-option,...)` tests decide some symbols.
 */
export async function checkBuildTools(tree: KernelTree): Promise<void> {
  const tools = ['make', 'gcc', 'flex', 'bison', 'bc', `${crossCompilePrefix(tree)}gcc`];
  if (tree.niceLevel !== undefined) tools.push('nice');
  for (const tool of tools) await runTool(tool, ['--version']);
}
