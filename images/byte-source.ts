/** Random-access reads from an image given as a path or as bytes in memory. */
import { open } from 'node:fs/promises';
import { QwamosError } from '../core/errors.js';

export interface ByteSource {
  /** The path, or "the KIND" for bytes in memory; used in error messages. */
  label: string;
  size: number;
  /** Returns up to `length` bytes from `offset`; fewer at the end of the image. */
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/** Opens `source`; `kind` (such as "sparse image") names it in errors. */
export async function openByteSource(source: string | Uint8Array, kind: string): Promise<ByteSource> {
  if (typeof source !== 'string') {
    const buffer = Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    return {
      label: `the ${kind}`,
      size: buffer.length,
      read: async (offset, length) => buffer.subarray(offset, Math.min(offset + length, buffer.length)),
      close: async () => undefined,
    };
  }

  const handle = await open(source, 'r').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `${kind} ${source} does not exist; check the path`);
    throw error;
  });
  const { size } = await handle.stat();
  return {
    label: source,
    size,
    read: async (offset, length) => {
      const buffer = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      await handle.read(buffer, 0, buffer.length, offset);
      return buffer;
    },
    close: () => handle.close(),
  };
}
