/**
 * Builds qwamos-verify, the C stage verifier that runs in the initramfs,
 * from verifier/ and the PQClean sources of the pqclean npm package, by
 * running verifier/Makefile. The Makefile contains the compiler flags and why
 * each matters for a reproducible binary.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QwamosError } from '../core/errors.js';
import { runTool } from '../core/exec.js';

export type VerifierTarget = 'host' | 'aarch64';

export interface VerifierBuildOptions {
  /** 'host' builds with gcc for tests; 'aarch64' with aarch64-linux-gnu-gcc for the image. */
  target: VerifierTarget;
  /** Folder that receives the programs; created when missing. */
  outDir: string;
  /** Host only: build with AddressSanitizer and UndefinedBehaviorSanitizer, dynamically linked. */
  sanitize?: boolean;
  /** Appends the compiler output to this file. */
  logFile?: string;
}

export interface VerifierTestPrograms {
  /** Reads length-prefixed manifests on stdin and prints one parse result per line. */
  parse: string;
  /** Reads "PK MESSAGE CONTEXT SIGNATURE" hex lines on stdin and prints 1 or 0 per line. */
  acvp: string;
}

const TARGETS: Record<VerifierTarget, { compiler: string; libcPackage: string }> = {
  host: { compiler: 'gcc', libcPackage: 'libc6-dev' },
  aarch64: { compiler: 'aarch64-linux-gnu-gcc', libcPackage: 'libc6-dev-arm64-cross' },
};

/** Returns the verifier/ folder, from the source tree or from dist/. */
function verifierSourceDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.resolve(here, '../verifier'), path.resolve(here, '../../verifier')];
  const found = candidates.find((candidate) => existsSync(path.join(candidate, 'Makefile')));
  if (found === undefined) throw new QwamosError('INPUT_NOT_FOUND', `verifier/Makefile not found beside ${here}; run qwamos-build from its repository checkout`);
  return found;
}

/** Returns the PQClean source tree shipped in the pqclean npm package. */
export function pqcleanSourceDir(): string {
  const require = createRequire(import.meta.url);
  let packageJson: string;
  try {
    packageJson = require.resolve('pqclean/package.json');
  } catch {
    throw new QwamosError('INPUT_NOT_FOUND', 'the pqclean npm package is not installed; run npm install in the qwamos-build checkout');
  }

  const sourceDir = path.join(path.dirname(packageJson), 'deps', 'PQClean');
  if (!existsSync(path.join(sourceDir, 'crypto_sign', 'ml-dsa-87', 'clean', 'sign.c'))) {
    throw new QwamosError('INPUT_NOT_FOUND', `${sourceDir} has no crypto_sign/ml-dsa-87/clean sources; reinstall the pqclean npm package`);
  }
  return sourceDir;
}

/** Fails with TOOL_MISSING when the compiler has no static C library to link against. */
async function checkStaticLibc(target: VerifierTarget): Promise<void> {
  const { compiler, libcPackage } = TARGETS[target];
  const { stdout } = await runTool(compiler, ['-print-file-name=libc.a']);
  if (!path.isAbsolute(stdout.trim())) {
    throw new QwamosError('TOOL_MISSING', `${compiler} finds no libc.a, so it cannot link qwamos-verify statically; install it with: apt-get install ${libcPackage}`, {
      data: { tool: compiler, debianPackage: libcPackage },
    });
  }
}

/** Runs the Makefile into a fresh folder inside `outDir` and moves `programs` into `outDir`. */
async function runMake(options: VerifierBuildOptions, goal: string, programs: string[]): Promise<string[]> {
  const sanitize = options.sanitize === true;
  if (sanitize && options.target !== 'host') throw new QwamosError('USAGE', 'sanitize builds are host only; drop sanitize or use target host');
  if (!sanitize) await checkStaticLibc(options.target);

  await mkdir(options.outDir, { recursive: true });
  const buildDir = await mkdtemp(path.join(path.resolve(options.outDir), '.qwamos-verify-build-'));
  try {
    await runTool('make', [
      '-C', verifierSourceDir(),
      `O=${buildDir}`,
      `CC=${TARGETS[options.target].compiler}`,
      `PQCLEAN=${pqcleanSourceDir()}`,
      `SANITIZE=${sanitize ? 1 : 0}`,
      goal,
    ], { logFile: options.logFile, timeoutMs: 10 * 60_000 });

    const outputs: string[] = [];
    for (const program of programs) {
      const output = path.join(options.outDir, program);
      await rename(path.join(buildDir, program), output);
      outputs.push(output);
    }
    return outputs;
  } finally {
    await rm(buildDir, { recursive: true, force: true });
  }
}

/**
 * Builds qwamos-verify for `target` into `outDir` and returns its path.
 * Without `sanitize` the program is static, stripped and byte-for-byte
 * reproducible for the same compiler and sources.
 */
export async function buildVerifier(options: VerifierBuildOptions): Promise<string> {
  const [verifier] = await runMake(options, 'all', ['qwamos-verify']);
  return verifier as string;
}

/** Builds the parser and ML-DSA test drivers (verifier/test-*.c) into `outDir`. */
export async function buildVerifierTestPrograms(options: VerifierBuildOptions): Promise<VerifierTestPrograms> {
  const [parse, acvp] = await runMake(options, 'test-programs', ['test-parse', 'test-acvp']);
  return { parse: parse as string, acvp: acvp as string };
}
