/**
 * `info_image` output: the text avbtool 1.3 prints, line for line, and a
 * JSON form of the same facts for `--json`.
 */
import { createHash } from 'node:crypto';
import type { AvbDescriptor } from './avb-descriptors.js';
import type { AvbImage } from './avb-footer.js';
import { VBMETA_HEADER_SIZE } from './avb-vbmeta.js';

/** Formats an image's footer and vbmeta as `avbtool info_image` prints them. */
export function formatAvbInfo(image: AvbImage): string {
  const { footer, vbmeta } = image;
  const { header } = vbmeta;
  const lines: string[] = [];

  if (footer) {
    lines.push(
      `Footer version:           ${footer.versionMajor}.${footer.versionMinor}`,
      `Image size:               ${image.imageSize} bytes`,
      `Original image size:      ${footer.originalImageSize} bytes`,
      `VBMeta offset:            ${footer.vbmetaOffset}`,
      `VBMeta size:              ${footer.vbmetaSize} bytes`,
      '--',
    );
  }

  lines.push(
    `Minimum libavb version:   ${header.requiredLibavbVersionMajor}.${header.requiredLibavbVersionMinor}`,
    `Header Block:             ${VBMETA_HEADER_SIZE} bytes`,
    `Authentication Block:     ${header.authenticationBlockSize} bytes`,
    `Auxiliary Block:          ${header.auxiliaryBlockSize} bytes`,
  );
  if (vbmeta.publicKey.length > 0) lines.push(`Public key (sha1):        ${digestHex('sha1', vbmeta.publicKey)}`);
  lines.push(
    `Algorithm:                ${vbmeta.algorithm?.name ?? `unknown (type ${header.algorithmType})`}`,
    `Rollback Index:           ${header.rollbackIndex}`,
    `Flags:                    ${header.flags}`,
    `Rollback Index Location:  ${header.rollbackIndexLocation}`,
    `Release String:           '${header.releaseString}'`,
    'Descriptors:',
  );

  if (vbmeta.descriptors.length === 0) lines.push('    (none)');
  for (const descriptor of vbmeta.descriptors) lines.push(...formatDescriptor(descriptor));
  return `${lines.join('\n')}\n`;
}

function formatDescriptor(descriptor: AvbDescriptor): string[] {
  switch (descriptor.kind) {
    case 'property':
      return [descriptor.value.length < 256
        ? `    Prop: ${descriptor.key} -> ${avbtoolPrintableValue(descriptor.value)}`
        : `    Prop: ${descriptor.key} -> (${descriptor.value.length} bytes)`];
    case 'hashtree':
      return [
        '    Hashtree descriptor:',
        `      Version of dm-verity:  ${descriptor.dmVerityVersion}`,
        `      Image Size:            ${descriptor.imageSize} bytes`,
        `      Tree Offset:           ${descriptor.treeOffset}`,
        `      Tree Size:             ${descriptor.treeSize} bytes`,
        `      Data Block Size:       ${descriptor.dataBlockSize} bytes`,
        `      Hash Block Size:       ${descriptor.hashBlockSize} bytes`,
        `      FEC num roots:         ${descriptor.fecNumRoots}`,
        `      FEC offset:            ${descriptor.fecOffset}`,
        `      FEC size:              ${descriptor.fecSize} bytes`,
        `      Hash Algorithm:        ${descriptor.hashAlgorithm}`,
        `      Partition Name:        ${descriptor.partitionName}`,
        `      Salt:                  ${hex(descriptor.salt)}`,
        `      Root Digest:           ${hex(descriptor.rootDigest)}`,
        `      Flags:                 ${descriptor.flags}`,
      ];
    case 'hash':
      return [
        '    Hash descriptor:',
        `      Image Size:            ${descriptor.imageSize} bytes`,
        `      Hash Algorithm:        ${descriptor.hashAlgorithm}`,
        `      Partition Name:        ${descriptor.partitionName}`,
        `      Salt:                  ${hex(descriptor.salt)}`,
        `      Digest:                ${hex(descriptor.digest)}`,
        `      Flags:                 ${descriptor.flags}`,
      ];
    case 'kernel_cmdline':
      return [
        '    Kernel Cmdline descriptor:',
        `      Flags:                 ${descriptor.flags}`,
        `      Kernel Cmdline:        '${descriptor.kernelCmdline}'`,
      ];
    case 'chain_partition':
      return [
        '    Chain Partition descriptor:',
        `      Partition Name:          ${descriptor.partitionName}`,
        `      Rollback Index Location: ${descriptor.rollbackIndexLocation}`,
        `      Public key (sha1):       ${digestHex('sha1', descriptor.publicKey)}`,
        `      Flags:                   ${descriptor.flags}`,
      ];
    case 'unknown':
      return [
        '    Unknown descriptor:',
        `      Tag:  ${descriptor.tag}`,
        descriptor.data.length < 256
          ? `      Data: ${pythonStringRepr(pythonBytesRepr(descriptor.data))} (${descriptor.data.length} bytes)`
          : `      Data: ${descriptor.data.length} bytes`,
      ];
  }
}

/** avbtool prints property values as Python's repr() of bytes with a leading "b'" shortened to "'". */
function avbtoolPrintableValue(value: Uint8Array): string {
  const repr = pythonBytesRepr(value);
  return repr.startsWith("b'") ? repr.slice(1) : repr;
}

/** Python 3 repr() of a bytes object: b'...' or b"..." with \t \n \r \\ and \xNN escapes. */
function pythonBytesRepr(bytes: Uint8Array): string {
  const quote = bytes.includes(0x27) && !bytes.includes(0x22) ? '"' : "'";
  let body = '';
  for (const byte of bytes) {
    const char = String.fromCharCode(byte);
    if (char === quote || char === '\\') body += `\\${char}`;
    else if (char === '\t') body += '\\t';
    else if (char === '\n') body += '\\n';
    else if (char === '\r') body += '\\r';
    else if (byte < 0x20 || byte >= 0x7f) body += `\\x${byte.toString(16).padStart(2, '0')}`;
    else body += char;
  }
  return `b${quote}${body}${quote}`;
}

/** Python 3 repr() of a printable ASCII string. */
function pythonStringRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const body = text.replaceAll('\\', '\\\\').replaceAll(quote, `\\${quote}`);
  return `${quote}${body}${quote}`;
}

/** Returns the facts of formatAvbInfo as JSON-ready values: byte strings in hex, 64-bit numbers as strings. */
export function avbInfoJson(image: AvbImage): Record<string, unknown> {
  const { vbmeta } = image;
  return {
    image: image.path,
    imageSize: image.imageSize,
    footer: image.footer ?? null,
    header: { ...vbmeta.header, rollbackIndex: vbmeta.header.rollbackIndex.toString() },
    algorithm: vbmeta.algorithm?.name ?? null,
    publicKeySha1: vbmeta.publicKey.length > 0 ? digestHex('sha1', vbmeta.publicKey) : null,
    publicKeySha256: vbmeta.publicKey.length > 0 ? digestHex('sha256', vbmeta.publicKey) : null,
    vbmetaSha256: digestHex('sha256', vbmeta.bytes),
    descriptors: vbmeta.descriptors.map(descriptorJson),
  };
}

function descriptorJson(descriptor: AvbDescriptor): Record<string, unknown> {
  const entries = Object.entries(descriptor).map(([key, value]) => {
    if (value instanceof Uint8Array) return [key, hex(value)];
    if (typeof value === 'bigint') return [key, value.toString()];
    return [key, value];
  });
  return Object.fromEntries(entries) as Record<string, unknown>;
}

function digestHex(algorithm: string, bytes: Uint8Array): string {
  return createHash(algorithm).update(bytes).digest('hex');
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
