/**
 * A small strict DER (ITU-T X.690) encoder and decoder for the key formats
 * of the key store: PKCS#8, SubjectPublicKeyInfo and PBES2 parameters.
 *
 * The decoder accepts only what DER allows and what these formats use:
 * single-byte tags, definite minimal lengths, minimal INTEGER and OBJECT
 * IDENTIFIER encodings, and no bytes after the outermost element.
 */

/** A malformed or unexpected DER encoding. Callers add the file name. */
export class DerError extends Error {
  override readonly name = 'DerError';
}

export const TAG_INTEGER = 0x02;
export const TAG_BIT_STRING = 0x03;
export const TAG_OCTET_STRING = 0x04;
export const TAG_NULL = 0x05;
export const TAG_OID = 0x06;
export const TAG_SEQUENCE = 0x30;

/** Tag byte of a primitive context-specific [n] IMPLICIT element. */
export function contextTag(tagNumber: number): number {
  return 0x80 | tagNumber;
}

/** One decoded element: its tag byte and the bytes of its content. */
export interface DerElement {
  tag: number;
  content: Uint8Array;
}

/** Maximum content length the decoder accepts: 16 MiB, far above any key file. */
const MAX_CONTENT_LENGTH = 16 * 1024 * 1024;

// --- Encoding ---

function encodeLength(length: number): Uint8Array {
  if (length < 0x80) return Uint8Array.of(length);

  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

/** Encodes one element from its tag byte and content. */
export function derElement(tag: number, content: Uint8Array): Uint8Array {
  const length = encodeLength(content.length);
  const out = new Uint8Array(1 + length.length + content.length);
  out[0] = tag;
  out.set(length, 1);
  out.set(content, 1 + length.length);
  return out;
}

export function derSequence(...elements: Uint8Array[]): Uint8Array {
  return derElement(TAG_SEQUENCE, concatBytes(elements));
}

export function derOctetString(bytes: Uint8Array): Uint8Array {
  return derElement(TAG_OCTET_STRING, bytes);
}

/** Encodes a BIT STRING whose bit count is a multiple of 8 (no unused bits). */
export function derBitString(bytes: Uint8Array): Uint8Array {
  return derElement(TAG_BIT_STRING, concatBytes([Uint8Array.of(0), bytes]));
}

/** Encodes a non-negative INTEGER in the minimal two's-complement form. */
export function derInteger(value: number | bigint): Uint8Array {
  let rest = BigInt(value);
  if (rest < 0n) throw new RangeError(`derInteger: negative value ${rest} is not supported`);

  const bytes: number[] = [];
  do {
    bytes.unshift(Number(rest & 0xffn));
    rest >>= 8n;
  } while (rest > 0n);
  if ((bytes[0] ?? 0) & 0x80) bytes.unshift(0);
  return derElement(TAG_INTEGER, Uint8Array.from(bytes));
}

/** Encodes an OBJECT IDENTIFIER given in dotted form, such as '2.16.840.1.101.3.4.3.19'. */
export function derOid(dotted: string): Uint8Array {
  const arcs = dotted.split('.').map((arc) => BigInt(arc));
  const [first, second, ...rest] = arcs;
  if (first === undefined || second === undefined || first > 2n) throw new RangeError(`derOid: invalid OID ${dotted}`);

  const bytes: number[] = [];
  for (const arc of [first * 40n + second, ...rest]) {
    const group: number[] = [Number(arc & 0x7fn)];
    for (let high = arc >> 7n; high > 0n; high >>= 7n) group.unshift(Number(high & 0x7fn) | 0x80);
    bytes.push(...group);
  }
  return derElement(TAG_OID, Uint8Array.from(bytes));
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

// --- Decoding ---

/** Reads the element that starts at `offset`; returns it and the offset after it. */
function readElement(bytes: Uint8Array, offset: number): { element: DerElement; next: number } {
  const tag = bytes[offset];
  if (tag === undefined) throw new DerError(`element expected at byte ${offset}, but the data ends there (truncated)`);
  if ((tag & 0x1f) === 0x1f) throw new DerError(`multi-byte tag at byte ${offset} is not used by these formats`);

  const first = bytes[offset + 1];
  if (first === undefined) throw new DerError(`length of the element at byte ${offset} is missing (truncated)`);

  let length = first;
  let headerLength = 2;
  if (first === 0x80) throw new DerError(`indefinite length at byte ${offset} is not allowed in DER`);
  if (first > 0x80) {
    const count = first & 0x7f;
    if (count > 4) throw new DerError(`length of the element at byte ${offset} uses ${count} bytes; at most 4 are supported`);
    if (offset + 2 + count > bytes.length) throw new DerError(`length of the element at byte ${offset} is truncated`);

    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (bytes[offset + 2 + i] ?? 0);
    if (bytes[offset + 2] === 0 || length < 0x80) throw new DerError(`length of the element at byte ${offset} is not in the minimal DER form`);
    headerLength = 2 + count;
  }

  if (length > MAX_CONTENT_LENGTH) throw new DerError(`element at byte ${offset} declares ${length} bytes, more than the ${MAX_CONTENT_LENGTH} supported`);
  const start = offset + headerLength;
  if (start + length > bytes.length) {
    throw new DerError(`element at byte ${offset} declares ${length} content bytes but only ${bytes.length - start} follow (truncated)`);
  }
  return { element: { tag, content: bytes.subarray(start, start + length) }, next: start + length };
}

/** Decodes exactly one element that fills all of `bytes`. */
export function decodeSingle(bytes: Uint8Array): DerElement {
  const { element, next } = readElement(bytes, 0);
  if (next !== bytes.length) throw new DerError(`${bytes.length - next} bytes follow the end of the DER structure`);
  return element;
}

/** Decodes the content of a constructed element into its child elements. */
export function decodeChildren(content: Uint8Array): DerElement[] {
  const children: DerElement[] = [];
  for (let offset = 0; offset < content.length;) {
    const { element, next } = readElement(content, offset);
    children.push(element);
    offset = next;
  }
  return children;
}

function tagName(tag: number): string {
  const names: Record<number, string> = {
    [TAG_INTEGER]: 'INTEGER',
    [TAG_BIT_STRING]: 'BIT STRING',
    [TAG_OCTET_STRING]: 'OCTET STRING',
    [TAG_NULL]: 'NULL',
    [TAG_OID]: 'OBJECT IDENTIFIER',
    [TAG_SEQUENCE]: 'SEQUENCE',
  };
  return names[tag] ?? `tag 0x${tag.toString(16).padStart(2, '0')}`;
}

/** Throws unless `element` has the `expected` tag; `field` names the field in the message. */
export function expectTag(element: DerElement | undefined, expected: number, field: string): DerElement {
  if (element === undefined) throw new DerError(`${field} is missing`);
  if (element.tag !== expected) throw new DerError(`${field} must be ${tagName(expected)} but is ${tagName(element.tag)}`);
  return element;
}

/** Decodes a SEQUENCE and checks that it has between `min` and `max` children. */
export function expectSequence(element: DerElement | undefined, field: string, min: number, max = min): DerElement[] {
  const children = decodeChildren(expectTag(element, TAG_SEQUENCE, field).content);
  if (children.length < min || children.length > max) {
    const expected = min === max ? `${min}` : `${min} to ${max}`;
    throw new DerError(`${field} must have ${expected} fields but has ${children.length}`);
  }
  return children;
}

/** Decodes a minimal non-negative INTEGER. */
export function decodeUnsignedInteger(element: DerElement | undefined, field: string): bigint {
  const { content } = expectTag(element, TAG_INTEGER, field);
  const first = content[0];
  if (first === undefined) throw new DerError(`${field} has an empty INTEGER encoding`);
  if (first & 0x80) throw new DerError(`${field} is negative`);
  if (content.length > 1 && first === 0 && !((content[1] ?? 0) & 0x80)) throw new DerError(`${field} is not in the minimal DER form`);

  let value = 0n;
  for (const byte of content) value = (value << 8n) | BigInt(byte);
  return value;
}

/** Decodes an OBJECT IDENTIFIER into its dotted form. */
export function decodeOid(element: DerElement | undefined, field: string): string {
  const { content } = expectTag(element, TAG_OID, field);
  if (content.length === 0) throw new DerError(`${field} has an empty OBJECT IDENTIFIER`);

  const arcs: bigint[] = [];
  let arc = 0n;
  let startOfArc = true;
  for (const [index, byte] of content.entries()) {
    if (startOfArc && byte === 0x80) throw new DerError(`${field} has a non-minimal OBJECT IDENTIFIER encoding`);
    arc = (arc << 7n) | BigInt(byte & 0x7f);
    startOfArc = !(byte & 0x80);
    if (startOfArc) {
      arcs.push(arc);
      arc = 0n;
    } else if (index === content.length - 1) {
      throw new DerError(`${field} has a truncated OBJECT IDENTIFIER`);
    }
  }

  const [combined = 0n, ...rest] = arcs;
  const first = combined < 80n ? combined / 40n : 2n;
  return [first, combined - first * 40n, ...rest].join('.');
}

/** Decodes a BIT STRING that has no unused bits. */
export function decodeBitStringBytes(element: DerElement | undefined, field: string): Uint8Array {
  const { content } = expectTag(element, TAG_BIT_STRING, field);
  if (content[0] !== 0) throw new DerError(`${field} must have 0 unused bits`);
  return content.subarray(1);
}

/** Decodes an OCTET STRING (or an element of another tag given as `tag`). */
export function decodeOctets(element: DerElement | undefined, field: string, tag = TAG_OCTET_STRING): Uint8Array {
  return expectTag(element, tag, field).content;
}
