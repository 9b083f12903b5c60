/**
 * `qwamos-build sparse pack|unpack`: convert between raw partition images
 * and Android sparse images, in place of img2simg and simg2img.
 */
import { type Command, parseCommandArgs, printJson } from '../command.js';
import { QwamosError } from '../../core/errors.js';
import { readSparseImage, unsparseImages } from '../../images/sparse-read.js';
import { DEFAULT_SPARSE_BLOCK_SIZE, writeSparseImage } from '../../images/sparse-write.js';

export const sparsePackCommand: Command = {
  name: ['sparse', 'pack'],
  summary: 'convert a raw image into a sparse image (img2simg)',
  help: `Usage: qwamos-build sparse pack RAW SPARSE [--block-size BYTES] [--max-file-size SIZE] [--json]

Writes the raw image RAW as the Android sparse image SPARSE. Blocks that
repeat one 4-byte word become FILL chunks and the rest RAW chunks, as
img2simg makes them; a single output file has the same bytes as img2simg's.

Options:
  --block-size BYTES    block size, a multiple of 4 and at least 1024
                        (default ${DEFAULT_SPARSE_BLOCK_SIZE})
  --max-file-size SIZE  split into files of at most SIZE bytes (a number,
                        0x hex, or with a K, M or G suffix for KiB, MiB,
                        GiB), such as fastboot's max-download-size; the
                        parts are SPARSE with .0, .1, ... before the
                        extension, and each covers the whole image
  --json                print the written files as JSON`,

  async run(argv) {
    const { values, positionals } = parseCommandArgs('sparse pack', argv, {
      'block-size': { type: 'string' },
      'max-file-size': { type: 'string' },
      json: { type: 'boolean', default: false },
    }, true);
    if (positionals.length !== 2) {
      throw new QwamosError('USAGE', `sparse pack: give the raw image and the sparse image to write (got ${positionals.length} arguments); run 'qwamos-build sparse pack --help' for the options`);
    }
    const [rawPath, sparsePath] = positionals as [string, string];
    const blockSize = values['block-size'] === undefined ? undefined : parseSize(values['block-size'], '--block-size');
    const maxFileSize = values['max-file-size'] === undefined ? undefined : parseSize(values['max-file-size'], '--max-file-size');

    const files = await writeSparseImage(rawPath, sparsePath, { blockSize, maxFileSize });
    if (values.json) {
      const described = [];
      for (const file of files) {
        const info = await readSparseImage(file);
        described.push({ path: file, size: info.fileSize, chunks: info.chunks.length, blockSize: info.header.blockSize, totalBlocks: info.header.totalBlocks });
      }
      printJson({ ok: true, files: described });
    } else {
      process.stdout.write(`${files.map((file) => `wrote ${file}`).join('\n')}\n`);
    }
    return 0;
  },
};

export const sparseUnpackCommand: Command = {
  name: ['sparse', 'unpack'],
  summary: 'expand sparse images into a raw image (simg2img)',
  help: `Usage: qwamos-build sparse unpack SPARSE... RAW [--no-crc-check] [--json]

Expands one or more sparse images into the raw image RAW, applying them in
order as simg2img does: DONT_CARE blocks keep what an earlier file wrote,
so the parts of a split image give back the whole image. Every header is
checked before anything is written.

Options:
  --no-crc-check   do not check CRC32 chunks against the data
  --json           print the result as JSON`,

  async run(argv) {
    const { values, positionals } = parseCommandArgs('sparse unpack', argv, {
      'no-crc-check': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    }, true);
    if (positionals.length < 2) {
      throw new QwamosError('USAGE', `sparse unpack: give at least one sparse image and the raw image to write (got ${positionals.length} arguments); run 'qwamos-build sparse unpack --help' for the options`);
    }
    const inputs = positionals.slice(0, -1);
    const rawPath = positionals[positionals.length - 1]!;

    const { rawSize } = await unsparseImages(inputs, rawPath, { verifyCrc: !values['no-crc-check'] });
    if (values.json) {
      printJson({ ok: true, inputs, output: rawPath, size: rawSize });
    } else {
      process.stdout.write(`wrote ${rawPath} (${rawSize} bytes)\n`);
    }
    return 0;
  },
};

export const SPARSE_COMMANDS: Command[] = [sparsePackCommand, sparseUnpackCommand];

/** Parses a byte count: decimal, 0x hex, or a number with a K, M or G (binary) suffix. */
function parseSize(text: string, option: string): number {
  const match = /^(0x[0-9a-f]+|\d+)([kmg]?)$/i.exec(text);
  if (!match) {
    throw new QwamosError('USAGE', `sparse pack: ${option} '${text}' is not a size; write bytes in decimal or 0x hex, or use a K, M or G suffix`);
  }
  const multiplier = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const value = Number(match[1]!.toLowerCase()) * multiplier;
  if (!Number.isSafeInteger(value)) throw new QwamosError('LIMIT_EXCEEDED', `sparse pack: ${option} '${text}' is above 2^53 bytes`);
  return value;
}
