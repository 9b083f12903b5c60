/**
 * Deterministic gzip for the initramfs. The kernel's gzip decompressor
 * (lib/decompress_inflate.c, enabled by CONFIG_RD_GZIP) unpacks one or more
 * gzip members, so the output of gzipDeterministic can be passed as the
 * initrd directly.
 */
import { gzipSync } from 'node:zlib';
import { QwamosError } from '../core/errors.js';

/** Compression level passed to zlib. The header's XFL byte depends on it (2 for level 9). */
export const GZIP_LEVEL = 9;

/*
 * gzip member header (RFC 1952), 10 bytes, integers little-endian:
 *
 * offset  size  field
 *      0     2  ID1 ID2 = 1f 8b
 *      2     1  CM = 8 (deflate)
 *      3     1  FLG = 0 (no file name, comment, extra field or header CRC)
 *      4     4  MTIME = 0 (no time stored)
 *      8     1  XFL (2 = maximum compression)
 *      9     1  OS (3 = Unix)
 */
const GZIP_MAGIC = [0x1f, 0x8b, 0x08] as const;
const FLG_OFFSET = 3;
const MTIME_OFFSET = 4;
const OS_OFFSET = 9;
const OS_UNIX = 3;

/**
 * Compresses `data` into one gzip member with a fixed header: no file name,
 * MTIME 0, OS byte 3 (Unix) and level GZIP_LEVEL.
 *
 * The deflate stream comes from the zlib that Node.js bundles (node:zlib,
 * version in process.versions.zlib). Node.js 20 bundles Chromium's zlib
 * fork, which is deterministic for a given input, level and build.
 * NOTE: Chromium's zlib selects some deflate internals (such as the match
 * hash) by CPU features in some versions, so bytes are only known to repeat
 * for the same Node.js release on the same CPU type.
 */
export function gzipDeterministic(data: Uint8Array): Buffer {
  const compressed = gzipSync(data, { level: GZIP_LEVEL });

  const headerIsFixed = GZIP_MAGIC.every((byte, index) => compressed[index] === byte)
    && compressed[FLG_OFFSET] === 0
    && compressed.readUInt32LE(MTIME_OFFSET) === 0;
  if (!headerIsFixed) {
    throw new QwamosError('COMMAND_FAILED', `node:zlib (zlib ${process.versions.zlib}) wrote an unexpected gzip header ${compressed.subarray(0, 10).toString('hex')}; expected 1f8b0800 with MTIME 0`);
  }

  // zlib writes the OS code it was compiled for; fix it so that a Node.js
  // built for another OS writes the same header. No header CRC covers it.
  compressed[OS_OFFSET] = OS_UNIX;
  return compressed;
}
