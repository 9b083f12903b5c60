/**
 * Reading the `.config` that a kernel built with CONFIG_IKCONFIG embeds.
 * kernel/configs.c places the gzip-compressed config between two ASCII
 * markers in the image's read-only data:
 *
 *   "IKCFG_ST" (8 bytes) | gzip stream (starts 1f 8b 08) | "IKCFG_ED" (8 bytes)
 *
 * An arm64 `Image` is uncompressed; an `Image.gz` is a plain gzip file whose
 * content is the Image.
 */
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { QwamosError } from '../core/errors.js';

const START_MARKER = Buffer.from('IKCFG_ST', 'ascii');
const END_MARKER = Buffer.from('IKCFG_ED', 'ascii');
/** gzip magic (1f 8b) and the deflate method byte (08). */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08]);

/** Returns the config text embedded in a kernel image, or undefined when it has none. */
function findEmbeddedConfig(image: Buffer): string | undefined {
  let start = image.indexOf(START_MARKER);
  while (start >= 0) {
    const payloadStart = start + START_MARKER.length;
    if (image.subarray(payloadStart, payloadStart + GZIP_HEADER.length).equals(GZIP_HEADER)) {
      const config = gunzipUntilEndMarker(image, payloadStart);
      if (config !== undefined) return config;
    }
    start = image.indexOf(START_MARKER, start + 1);
  }
  return undefined;
}

/** Tries each end marker after `payloadStart`: compressed data could contain the marker bytes. */
function gunzipUntilEndMarker(image: Buffer, payloadStart: number): string | undefined {
  let end = image.indexOf(END_MARKER, payloadStart);
  while (end >= 0) {
    try {
      return gunzipSync(image.subarray(payloadStart, end)).toString('utf8');
    } catch {
      end = image.indexOf(END_MARKER, end + 1);
    }
  }
  return undefined;
}

/**
 * Extracts the `.config` text from a kernel image built with
 * CONFIG_IKCONFIG, or from a gzip-compressed image. `name` is used in
 * messages.
 */
export function readConfigFromKernelImage(image: Buffer, name = 'kernel image'): string {
  const direct = findEmbeddedConfig(image);
  if (direct !== undefined) return direct;

  if (image.subarray(0, 2).equals(GZIP_HEADER.subarray(0, 2))) {
    let inner: Buffer;
    try {
      inner = gunzipSync(image);
    } catch (error) {
      throw new QwamosError('INPUT_INVALID', `${name} starts like a gzip file but does not decompress: ${(error as Error).message}`, { cause: error });
    }
    const nested = findEmbeddedConfig(inner);
    if (nested !== undefined) return nested;
  }

  throw new QwamosError('INPUT_INVALID', `${name} contains no embedded kernel config (no IKCFG_ST marker followed by gzip data); build the kernel with CONFIG_IKCONFIG=y, or pass the .config with --config`);
}

/** Reads a kernel image file and extracts its embedded `.config` text. */
export async function readConfigFromKernelImageFile(filePath: string): Promise<string> {
  const image = await readFile(filePath).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `kernel image ${filePath} does not exist`);
    throw error;
  });
  return readConfigFromKernelImage(image, filePath);
}
