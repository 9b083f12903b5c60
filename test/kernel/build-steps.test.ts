/**
 * configureKernel and compileKernel against a stand-in kernel tree: the
 * hand-made Kconfig files plus a Makefile whose targets behave like the
 * kernel's. Its tinyconfig writes a .config, and olddefconfig drops EROFS_FS
 * while MISC_FILESYSTEMS is off and drops the unknown KVM_ARM_HOST. Image
 * writes a file, or fails like a compiler in the failure test.
 * The real kernel runs in real-source.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildEnvironment, compileKernel, extractBuildErrors, formatBuildTimestamp } from '../../kernel/compile.js';
import { configureKernel } from '../../kernel/configure.js';
import { parseRules } from '../../kernel/rules.js';
import { captureError, lines, temporaryFolder, writeTree } from './helpers.js';
import { writeTestTree } from './kconfig-tree.js';

const MAKEFILE = lines(
  'tinyconfig:',
  '\tmkdir -p $(O)',
  "\tprintf '%s\\n' '#' '# Linux/$(ARCH) 6.1.0 Kernel Configuration' '#' 'CONFIG_HAS_IOMEM=y' 'CONFIG_BLOCK=y' '# CONFIG_MISC_FILESYSTEMS is not set' > $(O)/.config",
  'olddefconfig:',
  "\tgrep -q '^CONFIG_MISC_FILESYSTEMS=y' $(O)/.config || sed -i '/CONFIG_EROFS_FS/d' $(O)/.config",
  "\tsed -i '/CONFIG_KVM_ARM_HOST/d' $(O)/.config",
  'Image:',
  '\t@echo "  CC      init/main.o"',
  '\tmkdir -p $(O)/arch/$(ARCH)/boot',
  '\tprintf \'%s|%s|%s|%s\\n\' "$$KBUILD_BUILD_TIMESTAMP" "$$KBUILD_BUILD_USER" "$$KBUILD_BUILD_HOST" "$$KBUILD_BUILD_VERSION" > $(O)/arch/$(ARCH)/boot/Image',
  'kernelrelease:',
  '\t@echo 6.1.0-qwamos',
);

const FAILING_IMAGE = lines(
  'Image:',
  '\t@echo "  CC      init/main.o"',
  '\t@echo "  CC      fs/erofs/super.o"',
  "\t@echo \"fs/erofs/super.c:12:5: error: 'foo' undeclared (first use in this function)\"",
  '\t@echo "   12 |     foo = 1;"',
  '\t@echo "make[3]: *** [scripts/Makefile.build:250: fs/erofs/super.o] Error 1"',
  '\t@for i in $$(seq 1 40); do echo "  CC      filler$$i.o"; done',
  '\t@exit 2',
);

const RULES = lines(
  'schemaVersion: 1',
  'rules:',
  '  erofs:',
  '    - id: erofs',
  '      options: { CONFIG_EROFS_FS: y }',
  '      reason: system image',
);

async function standInTree(makefile = MAKEFILE) {
  const root = await temporaryFolder();
  const sourceDir = path.join(root, 'linux');
  await writeTestTree(sourceDir, { Makefile: makefile });
  await writeTree(root, {
    'fragments/erofs.config': lines('CONFIG_MISC_FILESYSTEMS=y', 'CONFIG_EROFS_FS=y'),
    'fragments/erofs-only.config': lines('CONFIG_EROFS_FS=y'),
    'fragments/old-kvm.config': lines('CONFIG_KVM_ARM_HOST=y'),
  });
  return {
    sourceDir,
    buildDir: path.join(root, 'build'),
    logFile: path.join(root, 'logs', 'kernel.log'),
    fragment: (name: string) => path.join(root, 'fragments', `${name}.config`),
    rules: await parseRules(RULES, 'rules.yaml'),
  };
}

describe('configureKernel', () => {
  it('merges fragments and checks the final config', async () => {
    const tree = await standInTree();
    const output: string[] = [];
    const result = await configureKernel({ ...tree, crossCompile: '', fragments: [tree.fragment('erofs')], rules: tree.rules, onLine: (line) => output.push(line) });

    expect(result.config.values.get('EROFS_FS')).toBe('y');
    expect(result.kernelVersion).toBe('6.1.0');
    expect(result.requested).toEqual({ ok: true, checked: 2, dropped: [] });
    expect(result.rules.passed).toBe(1);

    const written = await readFile(result.configPath, 'utf8');
    expect(written).toContain('CONFIG_MISC_FILESYSTEMS=y');
    expect(written).toContain('CONFIG_HAS_IOMEM=y');
    const log = await readFile(tree.logFile, 'utf8');
    expect(log).toContain(`$ make O=${tree.buildDir} ARCH=arm64 CROSS_COMPILE= tinyconfig`);
    expect(log).toContain('olddefconfig');
    expect(output.some((line) => line.includes('sed -i'))).toBe(true);
  });

  it('fails with each dropped option and its reason', async () => {
    const tree = await standInTree();
    const error = await captureError(() => configureKernel({ ...tree, crossCompile: '', fragments: [tree.fragment('erofs-only'), tree.fragment('old-kvm')], rules: tree.rules }));

    expect(error.code).toBe('KCONFIG_CHECK_FAILED');
    expect(error.message).toContain('2 requested options were dropped by Kconfig and 1 requirement rule failed');
    expect(error.details).toHaveLength(3);
    expect(error.details[0]).toBe("CONFIG_EROFS_FS: erofs-only.config:1 requested CONFIG_EROFS_FS=y but the final config has # CONFIG_EROFS_FS is not set: 'if MISC_FILESYSTEMS' at fs/Kconfig:8 is not met (MISC_FILESYSTEMS is off)");
    expect(error.details[1]).toMatch(/^CONFIG_KVM_ARM_HOST: symbol does not exist in this kernel version for arm64/);
    expect(error.details[2]).toBe('rule [erofs] erofs: CONFIG_EROFS_FS is not set, expected y (system image)');
  });

  it('reports a failing base config target', async () => {
    const tree = await standInTree();
    const error = await captureError(() => configureKernel({ ...tree, crossCompile: '', baseConfig: 'nosuchconfig', fragments: [], rules: tree.rules }));
    expect(error.code).toBe('COMMAND_FAILED');
    expect(error.details.join('\n')).toContain("No rule to make target 'nosuchconfig'");
  });
});

describe('compileKernel', () => {
  it('builds with fixed build metadata', async () => {
    const tree = await standInTree();
    const result = await compileKernel({ ...tree, crossCompile: '', jobs: 3, sourceDateEpoch: 1700000000 });

    expect(result.imagePath).toBe(path.join(tree.buildDir, 'arch', 'arm64', 'boot', 'Image'));
    expect(result.kernelRelease).toBe('6.1.0-qwamos');
    expect(await readFile(result.imagePath, 'utf8')).toBe('Tue Nov 14 22:13:20 UTC 2023|qwamos|qwamos-build|1\n');
    expect(await readFile(tree.logFile, 'utf8')).toContain(`$ make O=${tree.buildDir} ARCH=arm64 CROSS_COMPILE= -j3 Image`);
  });

  it('reports only the failing lines of the log', async () => {
    const tree = await standInTree(MAKEFILE.replace(/^Image:[\s\S]*?(?=^kernelrelease:)/m, () => FAILING_IMAGE));
    const error = await captureError(() => compileKernel({ ...tree, crossCompile: '', jobs: 1 }));

    expect(error.code).toBe('KERNEL_BUILD_FAILED');
    expect(error.message).toBe(`kernel build of Image failed in ${tree.buildDir}; the full output is in ${tree.logFile}`);
    expect(error.details).toContain("fs/erofs/super.c:12:5: error: 'foo' undeclared (first use in this function)");
    expect(error.details).toContain('make[3]: *** [scripts/Makefile.build:250: fs/erofs/super.o] Error 1');
    expect(error.details).not.toContain('  CC      filler10.o');
    expect(error.details.length).toBeLessThan(12);
    expect(await readFile(tree.logFile, 'utf8')).toContain('filler40.o');
  });
});

describe('formatBuildTimestamp', () => {
  // The reference is GNU date, which the kernel build uses to read the value back.
  for (const epoch of [0, 1700000000, 951782400]) {
    it(`matches date -u for ${epoch}`, () => {
      const reference = execFileSync('date', ['-u', '-d', `@${epoch}`], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } }).trim();
      expect(formatBuildTimestamp(epoch)).toBe(reference);
    });
  }

  it('parses back with date -d', () => {
    const parsed = execFileSync('date', ['-d', formatBuildTimestamp(1234567890), '+%s'], { encoding: 'utf8' }).trim();
    expect(parsed).toBe('1234567890');
  });
});

describe('buildEnvironment', () => {
  it('fixes user, host and version', () => {
    expect(buildEnvironment({ sourceDateEpoch: 0 })).toMatchObject({
      KBUILD_BUILD_TIMESTAMP: 'Thu Jan  1 00:00:00 UTC 1970',
      KBUILD_BUILD_USER: 'qwamos',
      KBUILD_BUILD_HOST: 'qwamos-build',
      KBUILD_BUILD_VERSION: '1',
    });
  });
});

describe('extractBuildErrors', () => {
  it('keeps error lines with context', () => {
    const log = lines('a', 'b', 'c', 'x.c:1:1: error: bad', 'd', 'e', 'f', 'g', 'h', 'make: *** [Makefile:1] Error 2', 'i');
    expect(extractBuildErrors(log)).toEqual(['b', 'c', 'x.c:1:1: error: bad', 'd', 'e', '...', 'g', 'h', 'make: *** [Makefile:1] Error 2', 'i']);
  });

  it('caps the number of lines', () => {
    const log = Array.from({ length: 200 }, (_, index) => `f${index}.c:1:1: error: bad`).join('\n');
    const result = extractBuildErrors(log);
    expect(result).toHaveLength(61);
    expect(result.at(-1)).toBe('... 140 more lines in the log');
  });
});
