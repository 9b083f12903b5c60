import { describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { QwamosError } from '../../core/errors.js';

describe('runTool', () => {
  it('returns stdout of a program', async () => {
    const result = await runTool('sh', ['-c', 'echo hello']);
    expect(result.stdout).toBe('hello');
  });

  it('names the Debian package of a missing program', async () => {
    const error = await runTool('mkfs.erofs-not-here', []).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QwamosError);
    expect((error as QwamosError).code).toBe('TOOL_MISSING');
  });

  it('reports the tail of a failing program', async () => {
    const error = await runTool('sh', ['-c', 'echo first; echo broken >&2; exit 3']).catch((e: unknown) => e) as QwamosError;
    expect(error.code).toBe('COMMAND_FAILED');
    expect(error.message).toContain('status 3');
    expect(error.details).toContain('broken');
  });

  it('names the package when a known tool is missing', async () => {
    const error = await runTool('qemu-system-aarch64', ['--version'], { env: { PATH: '/nonexistent' } }).catch((e: unknown) => e) as QwamosError;
    expect(error.code).toBe('TOOL_MISSING');
    expect(error.message).toContain('apt-get install qemu-system-arm');
  });
});
