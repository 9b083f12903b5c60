/**
 * Section input and output shared by the boot, init_boot and vendor_boot
 * writers: a section comes from a file path or from bytes in memory, file
 * sections are copied in 1 MiB pieces, and every section is padded with
 * zeros to the page size.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { produceAtomic } from '../core/atomic.js';
import { QwamosError } from '../core/errors.js';

/** A section's content: a file path, or the bytes themselves. */
export type SectionInput = string | Uint8Array;

export interface ResolvedSection {
  /** Section name as mkbootimg's options call it, such as 'kernel' or 'dtb'. */
  name: string;
  input: SectionInput;
  size: number;
}

/** Location of a section in a written or read image. */
export interface ImageSection {
  name: string;
  /** Byte offset from the start of the image. */
  offset: number;
  /** Size in bytes, without page padding. */
  size: number;
}

const COPY_BUFFER_SIZE = 1024 * 1024;

/** Largest value of the u32 size and address fields. */
export const U32_MAX = 0xffff_ffff;

/**
 * Returns the section with its size, or undefined when `input` is undefined.
 * A missing file is INPUT_NOT_FOUND; a section above the u32 size field is
 * LIMIT_EXCEEDED.
 */
export async function resolveSection(name: string, input: SectionInput | undefined): Promise<ResolvedSection | undefined> {
  if (input === undefined) return undefined;

  let size: number;
  if (typeof input === 'string') {
    const info = await stat(input).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        throw new QwamosError('INPUT_NOT_FOUND', `${name} file ${input} does not exist; check the path given for the ${name}`);
      }
      throw error;
    });
    if (!info.isFile()) {
      throw new QwamosError('INPUT_INVALID', `${name} path ${input} is not a regular file`);
    }
    size = info.size;
  } else {
    size = input.byteLength;
  }

  if (size > U32_MAX) {
    throw new QwamosError('LIMIT_EXCEEDED', `${name} is ${size} bytes; its size field is 32 bits, so the maximum is ${U32_MAX} bytes`);
  }
  return { name, input, size };
}

/** Feeds a section's bytes into `hash`, reading a file in 1 MiB pieces. */
export async function hashSection(hash: Hash, section: ResolvedSection): Promise<void> {
  if (typeof section.input !== 'string') {
    hash.update(section.input);
    return;
  }
  await forEachPiece(section, (piece) => {
    hash.update(piece);
  });
}

/**
 * Computes the 32-byte id of a v0 to v2 boot image: SHA-1 over each
 * section's bytes followed by its size as u32, where an absent section
 * contributes only a u32 0, then 12 zero bytes. Returns it in hex.
 */
export async function computeBootImageId(sections: readonly (ResolvedSection | undefined)[]): Promise<string> {
  const hash = createHash('sha1');
  for (const section of sections) {
    if (section) await hashSection(hash, section);
    const size = Buffer.alloc(4);
    size.writeUInt32LE(section?.size ?? 0);
    hash.update(size);
  }
  return Buffer.concat([hash.digest(), Buffer.alloc(12)]).toString('hex');
}

/** Appends bytes and sections to an image file, padding each to the page size. */
export class PagedImageWriter {
  position = 0;

  constructor(private readonly handle: FileHandle, private readonly pageSize: number) {}

  /** Writes `bytes` at the current position, then pads to the next page boundary. */
  async writePadded(bytes: Uint8Array): Promise<void> {
    await this.writeRaw(bytes);
    await this.pad();
  }

  /** Copies a section and pads it; returns where it went. An empty section adds nothing. */
  async writeSection(section: ResolvedSection): Promise<ImageSection> {
    const placed = await this.appendSection(section);
    await this.pad();
    return placed;
  }

  /** Copies a section without padding, for fragments that share one padded area. */
  async appendSection(section: ResolvedSection): Promise<ImageSection> {
    const offset = this.position;
    if (typeof section.input === 'string') {
      await forEachPiece(section, (piece) => this.writeRaw(piece));
    } else {
      await this.writeRaw(section.input);
    }
    return { name: section.name, offset, size: section.size };
  }

  /** Pads with zeros to the next page boundary. */
  async pad(): Promise<void> {
    const remainder = this.position % this.pageSize;
    if (remainder !== 0) await this.writeRaw(Buffer.alloc(this.pageSize - remainder));
  }

  private async writeRaw(bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.byteLength) {
      const result = await this.handle.write(bytes, written, bytes.byteLength - written, this.position);
      written += result.bytesWritten;
      this.position += result.bytesWritten;
    }
  }
}

/**
 * Creates `output` atomically: `fill` writes the image through a
 * PagedImageWriter on a temporary file, which is synced and renamed into
 * place. Returns the final size and what `fill` returns.
 */
export async function writePagedImage<T>(output: string, pageSize: number, fill: (writer: PagedImageWriter) => Promise<T>): Promise<{ size: number; result: T }> {
  return produceAtomic(output, async (temporaryPath) => {
    const handle = await open(temporaryPath, 'w', 0o644);
    try {
      const writer = new PagedImageWriter(handle, pageSize);
      const result = await fill(writer);
      await handle.sync();
      return { size: writer.position, result };
    } finally {
      await handle.close();
    }
  });
}

/** Reads a file section in 1 MiB pieces and checks that its size did not change. */
async function forEachPiece(section: ResolvedSection, consume: (piece: Buffer) => unknown): Promise<void> {
  const path = section.input as string;
  const handle = await open(path, 'r');
  const buffer = Buffer.allocUnsafe(COPY_BUFFER_SIZE);
  let total = 0;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, total);
      if (bytesRead === 0) break;
      await consume(buffer.subarray(0, bytesRead));
      total += bytesRead;
    }
  } finally {
    await handle.close();
  }

  if (total !== section.size) {
    throw new QwamosError('INPUT_INVALID', `${section.name} file ${path} changed size while it was read (${section.size} bytes before, ${total} after); rerun when nothing writes to it`);
  }
}
