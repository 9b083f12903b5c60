import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readConfigFromKernelImage, readConfigFromKernelImageFile } from '../../kernel/ikconfig.js';
import { captureError, lines, temporaryFolder } from './helpers.js';

const CONFIG = lines('#', '# Linux/arm64 6.1.192 Kernel Configuration', '#', 'CONFIG_KVM=y', 'CONFIG_IKCONFIG=y');

/** Builds a synthetic image: code bytes, a decoy marker, the IKCONFIG block, more bytes. */
function syntheticImage(config = CONFIG): Buffer {
  return Buffer.concat([
    randomBytes(4096),
    Buffer.from('IKCFG_ST not followed by gzip data'),
    randomBytes(1000).map((byte) => (byte === 0x1f ? 0 : byte)),
    Buffer.from('IKCFG_ST'),
    gzipSync(config),
    Buffer.from('IKCFG_ED'),
    randomBytes(4096),
  ]);
}

describe('readConfigFromKernelImage', () => {
  it('extracts the config between the markers', () => {
    expect(readConfigFromKernelImage(syntheticImage())).toBe(CONFIG);
  });

  it('extracts from a gzip-compressed image', () => {
    expect(readConfigFromKernelImage(gzipSync(syntheticImage()))).toBe(CONFIG);
  });

  it('rejects an image without IKCONFIG', async () => {
    const error = await captureError(() => readConfigFromKernelImage(randomBytes(8192).fill(0, 0, 2), 'Image'));
    expect(error.code).toBe('INPUT_INVALID');
    expect(error.message).toBe('Image contains no embedded kernel config (no IKCFG_ST marker followed by gzip data); build the kernel with CONFIG_IKCONFIG=y, or pass the .config with --config');
  });

  it('rejects a broken gzip image', async () => {
    const broken = gzipSync(syntheticImage()).subarray(0, 100);
    const error = await captureError(() => readConfigFromKernelImage(broken, 'Image.gz'));
    expect(error.message).toMatch(/^Image.gz starts like a gzip file but does not decompress/);
  });

  it('reads an image file', async () => {
    const folder = await temporaryFolder();
    const file = path.join(folder, 'Image.gz');
    await writeFile(file, gzipSync(syntheticImage()));
    expect(await readConfigFromKernelImageFile(file)).toBe(CONFIG);
  });

  it('reports a missing image file', async () => {
    const error = await captureError(() => readConfigFromKernelImageFile('/nonexistent/Image'));
    expect(error.code).toBe('INPUT_NOT_FOUND');
    expect(error.message).toBe('kernel image /nonexistent/Image does not exist');
  });
});
