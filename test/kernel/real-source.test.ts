/**
 * Checks against the real Linux 6.1 source from Debian's linux-source-6.1
 * package (/usr/src/linux-source-6.1.tar.xz): the Kconfig indexer, the
 * requested-option check with the real Kconfig tool (make tinyconfig and
 * olddefconfig), the shipped fragments, and IKCONFIG extraction next to the
 * kernel's own scripts/extract-ikconfig.
 *
 * The tarball is extracted once into <tmpdir>/qwamos-test-cache and reused
 * by later runs while the tarball's size and time stamp are unchanged.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { produceAtomic } from '../../core/atomic.js';
import { hasTool, runTool } from '../../core/exec.js';
import { readConfigFile } from '../../kernel/config-file.js';
import { configureKernel } from '../../kernel/configure.js';
import { readConfigFromKernelImage } from '../../kernel/ikconfig.js';
import { parseExpression } from '../../kernel/kconfig-expression.js';
import { findDefinitions, indexKconfig, type KconfigIndex } from '../../kernel/kconfig-index.js';
import { defaultFragmentPaths, packageRoot } from '../../kernel/paths.js';
import { captureError, lines, temporaryFolder, writeTree } from './helpers.js';

const TARBALL = '/usr/src/linux-source-6.1.tar.xz';
const CACHE = path.join(os.tmpdir(), 'qwamos-test-cache', 'linux-source-6.1');
const SKIP_NOTE = `${TARBALL} is missing; install Debian's linux-source-6.1 package to run the real-source tests`;
const TOOLS = ['make', 'gcc', 'flex', 'bison', 'bc', 'aarch64-linux-gnu-gcc'];
const TOOLS_NOTE = `the kernel build tools are missing; install make gcc flex bison bc gcc-aarch64-linux-gnu (needs: ${TOOLS.join(', ')})`;

const tarballPresent = existsSync(TARBALL);
if (!tarballPresent) console.warn(`skipping real-source tests: ${SKIP_NOTE}`);

/** Extracts the tarball into the cache unless the cached copy came from the same tarball. */
async function cachedSourceTree(): Promise<string> {
  const tarball = await stat(TARBALL);
  const stamp = `${tarball.size} ${tarball.mtimeMs}\n`;
  const stampFile = path.join(CACHE, '.qwamos-extracted-from');
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return CACHE;

  await produceAtomic(CACHE, async (temporary) => {
    await mkdir(temporary, { recursive: true });
    // --strip-components=1: drop the linux-source-6.1/ top folder.
    await runTool('tar', ['-xf', TARBALL, '-C', temporary, '--strip-components=1']);
    await writeFile(path.join(temporary, '.qwamos-extracted-from'), stamp);
  });
  return CACHE;
}

/** Reads Kconfig's own list of the files it parsed (deps_config in include/config/auto.conf.cmd). */
function kconfigFileList(buildDir: string): string[] {
  const text = readFileSync(path.join(buildDir, 'include', 'config', 'auto.conf.cmd'), 'utf8');
  const block = /deps_config := \\\n([\s\S]*?)\n\n/.exec(text)?.[1] ?? '';
  return block.split('\n').map((line) => line.replace(/[\s\\]/g, '')).filter(Boolean);
}

/** Line number of the first line of `file` that matches `pattern`, found with grep. */
function grepLine(sourceDir: string, file: string, pattern: string): number {
  const output = execFileSync('grep', ['-n', '-m1', '-E', pattern, path.join(sourceDir, file)], { encoding: 'utf8' });
  return Number(output.split(':')[0]);
}

describe.skipIf(!tarballPresent)('real Linux 6.1 source', () => {
  let sourceDir: string;
  let index: KconfigIndex;
  /** One build folder for the make-based tests, so that Kconfig's tools are compiled once. */
  let buildDir: string;

  beforeAll(async () => {
    sourceDir = await cachedSourceTree();
    index = await indexKconfig(sourceDir, { arch: 'arm64' });
    buildDir = await mkdtemp(path.join(os.tmpdir(), 'qwamos-kernel-build-'));
  }, 300_000);

  afterAll(async () => {
    if (buildDir) await rm(buildDir, { recursive: true, force: true });
  });

  it('explains EROFS_FS by its if MISC_FILESYSTEMS block', () => {
    const [erofs] = findDefinitions(index, 'EROFS_FS');
    expect(erofs!.file).toBe('fs/erofs/Kconfig');
    expect(erofs!.ownConditions.map((condition) => `${condition.kind} ${condition.expression}`)).toEqual(['depends on BLOCK']);

    // fs/Kconfig sources fs/erofs/Kconfig between `if MISC_FILESYSTEMS` and its endif.
    const ifLine = grepLine(sourceDir, 'fs/Kconfig', '^if MISC_FILESYSTEMS');
    const sourceLine = grepLine(sourceDir, 'fs/Kconfig', '^source "fs/erofs/Kconfig"');
    const endifLine = grepLine(sourceDir, 'fs/Kconfig', '^endif # MISC_FILESYSTEMS');
    expect(ifLine).toBeLessThan(sourceLine);
    expect(sourceLine).toBeLessThan(endifLine);
    expect(erofs!.enclosingConditions).toEqual([{ kind: 'if', expression: 'MISC_FILESYSTEMS', file: 'fs/Kconfig', line: ifLine }]);

    const [misc] = findDefinitions(index, 'MISC_FILESYSTEMS');
    expect(misc!.keyword).toBe('menuconfig');
  });

  it('finds no KVM_ARM_HOST in Linux 6.1', () => {
    expect(findDefinitions(index, 'KVM_ARM_HOST')).toEqual([]);
    const grep = execFileSync('sh', ['-c', 'grep -rlE "^\\s*(menu)?config KVM_ARM_HOST\\s*$" --include="Kconfig*" . || true'], { cwd: sourceDir, encoding: 'utf8' });
    expect(grep).toBe('');

    const [kvm] = findDefinitions(index, 'KVM');
    expect(kvm!.file).toBe('arch/arm64/kvm/Kconfig');
    expect(kvm!.type).toBe('bool');
    expect(kvm!.enclosingConditions.map((condition) => condition.expression)).toEqual(['VIRTUALIZATION']);
  });

  it('parses every condition of the tree', () => {
    const conditions = [...index.definitions.values()].flat().flatMap((definition) => [...definition.ownConditions, ...definition.enclosingConditions]);
    const selectConditions = [...index.reverseDependencies.values()].flat().flatMap((entry) => (entry.condition ? [entry.condition] : []));
    expect(conditions.length).toBeGreaterThan(10_000);

    const unparsed = [...conditions.map((condition) => condition.expression), ...selectConditions].filter((expression) => {
      try {
        parseExpression(expression);
        return false;
      } catch {
        return true;
      }
    });
    expect(unparsed).toEqual([]);
  });

  it('defines every symbol of the shipped fragments', async () => {
    for (const fragment of [...defaultFragmentPaths(), path.join(packageRoot(), 'kernel-configs', 'profiles', 'qemu-virt-arm64.config')]) {
      const config = await readConfigFile(fragment);
      for (const symbol of config.values.keys()) expect(findDefinitions(index, symbol).length, `${path.basename(fragment)}: ${symbol}`).toBeGreaterThan(0);
    }
  });

  it('reads the Kconfig files that Kconfig reads', async (context) => {
    const missing = await missingTools();
    if (missing) context.skip(missing);

    await runTool('make', [`O=${buildDir}`, 'ARCH=arm64', 'CROSS_COMPILE=aarch64-linux-gnu-', 'tinyconfig'], { cwd: sourceDir });

    expect([...new Set(index.files)].sort()).toEqual(kconfigFileList(buildDir).sort());
    const config = await readConfigFile(path.join(buildDir, '.config'));
    const undefinedSymbols = [...config.values.keys()].filter((symbol) => findDefinitions(index, symbol).length === 0);
    expect(undefinedSymbols).toEqual([]);
  }, 120_000);

  it('configures tinyconfig with the shipped fragments', async (context) => {
    const missing = await missingTools();
    if (missing) context.skip(missing);

    const root = await temporaryFolder();
    const result = await configureKernel({
      sourceDir,
      buildDir,
      logFile: path.join(root, 'configure.log'),
      fragments: [...defaultFragmentPaths(), path.join(packageRoot(), 'kernel-configs', 'profiles', 'qemu-virt-arm64.config')],
    });
    expect(result.requested.dropped).toEqual([]);
    expect(result.rules.failed).toBe(0);
    expect(result.kernelVersion).toMatch(/^6\.1\./);
    expect(result.config.values.get('KVM')).toBe('y');
    expect(result.config.values.get('EROFS_FS')).toBe('y');
  }, 120_000);

  it('explains options that Kconfig drops', async (context) => {
    const missing = await missingTools();
    if (missing) context.skip(missing);

    const root = await temporaryFolder();
    await writeTree(root, { 'broken.config': lines('CONFIG_BLOCK=y', 'CONFIG_EROFS_FS=y', 'CONFIG_KVM_ARM_HOST=y') });
    const error = await captureError(() => configureKernel({
      sourceDir,
      buildDir,
      logFile: path.join(root, 'configure.log'),
      fragments: [path.join(root, 'broken.config')],
      rules: { fileName: 'none', rules: [] },
    }));

    const ifLine = grepLine(sourceDir, 'fs/Kconfig', '^if MISC_FILESYSTEMS');
    expect(error.code).toBe('KCONFIG_CHECK_FAILED');
    expect(error.details).toEqual([
      `CONFIG_EROFS_FS: broken.config:2 requested CONFIG_EROFS_FS=y but the final config has # CONFIG_EROFS_FS is not set: 'if MISC_FILESYSTEMS' at fs/Kconfig:${ifLine} is not met (MISC_FILESYSTEMS is off)`,
      `CONFIG_KVM_ARM_HOST: symbol does not exist in this kernel version for arm64 (no Kconfig file under ${sourceDir} defines it)`,
    ]);
  }, 120_000);

  it('extracts IKCONFIG like scripts/extract-ikconfig', async () => {
    const root = await temporaryFolder();
    const config = readFileSync(path.join(sourceDir, 'arch', 'arm64', 'configs', 'defconfig'), 'utf8');
    const image = Buffer.concat([Buffer.alloc(65536, 0x41), Buffer.from('IKCFG_ST'), gzipSync(config), Buffer.from('IKCFG_ED'), Buffer.alloc(4096, 0x42)]);

    for (const [name, data] of [['Image', image], ['Image.gz', gzipSync(image)]] as const) {
      const file = path.join(root, name);
      await writeFile(file, data);
      const reference = execFileSync('sh', [path.join(sourceDir, 'scripts', 'extract-ikconfig'), file], { encoding: 'utf8' });
      expect(readConfigFromKernelImage(await readFile(file)), name).toBe(reference);
    }
  });
});

async function missingTools(): Promise<string | undefined> {
  for (const tool of TOOLS) if (!(await hasTool(tool))) return TOOLS_NOTE;
  return undefined;
}
