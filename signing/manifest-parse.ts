/**
 * Stage manifest parser. It runs the checks of verifier/manifest.c in the
 * same order and words each failure the same way, so the TypeScript and C
 * parsers give the same reason for the same bytes. The fuzz test compares
 * them. Every reason starts with one of the names listed in
 * docs/stage-manifest.md.
 */
import { QwamosError, type ErrorCode } from '../core/errors.js';
import {
  DEVICE_PROFILE_MAX,
  FLAG_VERITY,
  KEY_ID_SIZE,
  MANIFEST_FORMAT_VERSION,
  MANIFEST_HEADER_SIZE,
  MANIFEST_MAGIC,
  MANIFEST_MAX_SIZE,
  MANIFEST_SIGNATURE_SIZE,
  NEXT_KEY_IDS_MAX,
  OFFSET,
  ROLLBACK_LOCATIONS,
  ROOT_DIGEST_FIELD_SIZE,
  SHA512_SIZE,
  STAGE_NAME_MAX,
  VERITY_ALGORITHMS,
  VERITY_BLOCK_MAX,
  VERITY_BLOCK_MIN,
  VERITY_SALT_MAX,
  type StageManifest,
  type VerityHashAlgorithm,
  type VerityParameters,
} from './manifest.js';

const STAGE_NAME_EXTRA = '_-';
const DEVICE_PROFILE_EXTRA = '._-';

/** Returns the fix for a parse failure, chosen by the reason's name. */
function fixFor(reason: string): string {
  if (reason.startsWith('bad magic')) return 'the file is not a QWAMOS stage manifest';
  if (reason.startsWith('unsupported format version')) return `this verifier reads format version ${MANIFEST_FORMAT_VERSION}; sign the stage again with this qwamos-build`;
  if (reason.startsWith('invalid field') || reason.startsWith('oversized field')) return 'sign the stage again with values inside the limits of docs/stage-manifest.md';
  return 'the file is cut short, padded or not a stage manifest; copy it again or sign the stage again';
}

/** Throws the parse failure `reason` for the manifest named `source`. */
export function rejectManifest(source: string, reason: string, code: ErrorCode = 'INPUT_INVALID'): never {
  throw new QwamosError(code, `${source}: ${reason}; ${fixFor(reason)}`, { data: { reason, source } });
}

function isLowerAlnum(byte: number): boolean {
  return (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39);
}

/** Returns the index of the first byte that breaks the name rule, or -1. */
function firstInvalidNameByte(bytes: Uint8Array, extra: string): number {
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] ?? 0;
    const allowed = isLowerAlnum(byte) || (i > 0 && extra.includes(String.fromCharCode(byte)));
    if (!allowed) return i;
  }
  return -1;
}

function isValidName(name: string, max: number, extra: string): boolean {
  const bytes = Buffer.from(name, 'utf8');
  return bytes.length >= 1 && bytes.length <= max && firstInvalidNameByte(bytes, extra) < 0;
}

/** Returns true when `name` is a valid stage name: 1 to 32 of a-z 0-9 _ -, starting with a letter or digit. */
export function isValidStageName(name: string): boolean {
  return isValidName(name, STAGE_NAME_MAX, STAGE_NAME_EXTRA);
}

/** Returns true when `id` is a valid device profile id: 1 to 64 of a-z 0-9 . _ -, starting with a letter or digit. */
export function isValidDeviceProfile(id: string): boolean {
  return isValidName(id, DEVICE_PROFILE_MAX, DEVICE_PROFILE_EXTRA);
}

function allZero(bytes: Uint8Array): boolean {
  return bytes.every((byte) => byte === 0);
}

function isBlockSize(size: number): boolean {
  return size >= VERITY_BLOCK_MIN && size <= VERITY_BLOCK_MAX && (size & (size - 1)) === 0;
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

interface HeaderFields {
  flags: number;
  imageSize: bigint;
  rollbackIndex: bigint;
  rollbackIndexLocation: number;
  stageNameSize: number;
  deviceProfileSize: number;
  nextKeyIdCount: number;
  signedSize: number;
  verity?: Omit<VerityParameters, 'salt'> & { saltSize: number };
}

function algorithmOfCode(code: number): VerityHashAlgorithm | undefined {
  return (Object.keys(VERITY_ALGORITHMS) as VerityHashAlgorithm[]).find((name) => VERITY_ALGORITHMS[name].code === code);
}

/** Checks the verity fields of the header; the salt is checked with the variable area. */
function parseVerity(data: Buffer, imageSize: bigint, hasVerity: boolean, source: string): HeaderFields['verity'] {
  if (!hasVerity) {
    if (!allZero(data.subarray(OFFSET.verityAlgorithm, OFFSET.reserved))) rejectManifest(source, 'invalid field (verity fields set without the verity flag)');
    return undefined;
  }

  const algorithmCode = data.readUInt32BE(OFFSET.verityAlgorithm);
  const dataBlockSize = data.readUInt32BE(OFFSET.verityDataBlockSize);
  const hashBlockSize = data.readUInt32BE(OFFSET.verityHashBlockSize);
  const saltSize = data.readUInt32BE(OFFSET.veritySaltSize);
  const dataBlockCount = data.readBigUInt64BE(OFFSET.verityDataBlockCount);
  const hashTreeOffset = data.readBigUInt64BE(OFFSET.verityHashTreeOffset);
  const rootDigestField = data.subarray(OFFSET.verityRootDigest, OFFSET.verityRootDigest + ROOT_DIGEST_FIELD_SIZE);

  const hashAlgorithm = algorithmOfCode(algorithmCode);
  if (hashAlgorithm === undefined) rejectManifest(source, `invalid field (verity hash algorithm ${algorithmCode})`);
  if (!isBlockSize(dataBlockSize)) rejectManifest(source, `invalid field (verity data block size ${dataBlockSize})`);
  if (!isBlockSize(hashBlockSize)) rejectManifest(source, `invalid field (verity hash block size ${hashBlockSize})`);
  if (saltSize > VERITY_SALT_MAX) rejectManifest(source, `oversized field (verity salt size ${saltSize} > ${VERITY_SALT_MAX})`, 'LIMIT_EXCEEDED');
  // With a single data block dm-verity has no hash tree: the root digest is the block's own hash.
  if (dataBlockCount < 2n) rejectManifest(source, `invalid field (verity data block count ${dataBlockCount}, minimum 2)`);

  if (dataBlockCount > imageSize / BigInt(dataBlockSize)) rejectManifest(source, 'invalid field (verity data area exceeds the image size)');
  const dataAreaSize = dataBlockCount * BigInt(dataBlockSize);
  if (hashTreeOffset % BigInt(hashBlockSize) !== 0n) {
    rejectManifest(source, `invalid field (verity hash tree offset ${hashTreeOffset} is not a multiple of the hash block size)`);
  }
  if (hashTreeOffset < dataAreaSize) rejectManifest(source, `invalid field (verity hash tree offset ${hashTreeOffset} overlaps the data area)`);
  if (imageSize < BigInt(hashBlockSize) || hashTreeOffset > imageSize - BigInt(hashBlockSize)) {
    rejectManifest(source, 'invalid field (verity hash tree lies outside the image)');
  }
  const digestSize = VERITY_ALGORITHMS[hashAlgorithm].digestSize;
  if (!allZero(rootDigestField.subarray(digestSize))) rejectManifest(source, 'invalid field (verity root digest padding not zero)');

  const rootDigest = Uint8Array.from(rootDigestField.subarray(0, digestSize));
  return { hashAlgorithm, dataBlockSize, hashBlockSize, dataBlockCount, hashTreeOffset, rootDigest, saltSize };
}

/** Checks the header fields that do not depend on the variable area. */
function parseHeader(data: Buffer, source: string): HeaderFields {
  const flags = data.readUInt32BE(OFFSET.flags);
  const signatureSize = data.readUInt32BE(OFFSET.signatureSize);
  const stageNameSize = data[OFFSET.stageNameSize] ?? 0;
  const deviceProfileSize = data[OFFSET.deviceProfileSize] ?? 0;
  const nextKeyIdCount = data[OFFSET.nextKeyIdCount] ?? 0;
  const imageSize = data.readBigUInt64BE(OFFSET.imageSize);
  const rollbackIndexLocation = data.readUInt32BE(OFFSET.rollbackIndexLocation);

  if ((flags & ~FLAG_VERITY) !== 0) rejectManifest(source, `invalid field (unknown flags ${hex32(flags)})`);
  if (data[OFFSET.reservedByte] !== 0 || !allZero(data.subarray(OFFSET.reserved, MANIFEST_HEADER_SIZE))) {
    rejectManifest(source, 'invalid field (reserved bytes not zero)');
  }
  if (signatureSize !== MANIFEST_SIGNATURE_SIZE) rejectManifest(source, `invalid field (signature size ${signatureSize}, expected ${MANIFEST_SIGNATURE_SIZE})`);
  if (stageNameSize === 0) rejectManifest(source, 'invalid field (stage name is empty)');
  if (stageNameSize > STAGE_NAME_MAX) rejectManifest(source, `oversized field (stage name size ${stageNameSize} > ${STAGE_NAME_MAX})`, 'LIMIT_EXCEEDED');
  if (deviceProfileSize === 0) rejectManifest(source, 'invalid field (device profile id is empty)');
  if (deviceProfileSize > DEVICE_PROFILE_MAX) {
    rejectManifest(source, `oversized field (device profile id size ${deviceProfileSize} > ${DEVICE_PROFILE_MAX})`, 'LIMIT_EXCEEDED');
  }
  if (nextKeyIdCount > NEXT_KEY_IDS_MAX) {
    rejectManifest(source, `oversized field (next-stage key id count ${nextKeyIdCount} > ${NEXT_KEY_IDS_MAX})`, 'LIMIT_EXCEEDED');
  }
  if (rollbackIndexLocation >= ROLLBACK_LOCATIONS) {
    rejectManifest(source, `invalid field (rollback index location ${rollbackIndexLocation}, maximum ${ROLLBACK_LOCATIONS - 1})`);
  }
  if (imageSize === 0n) rejectManifest(source, 'invalid field (image size is 0)');

  return {
    flags,
    imageSize,
    rollbackIndex: data.readBigUInt64BE(OFFSET.rollbackIndex),
    rollbackIndexLocation,
    stageNameSize,
    deviceProfileSize,
    nextKeyIdCount,
    signedSize: data.readUInt32BE(OFFSET.signedSize),
    verity: parseVerity(data, imageSize, (flags & FLAG_VERITY) !== 0, source),
  };
}

/** Cuts the variable-area fields in order, failing when one runs past the end of `data`. */
function takeFields(data: Buffer, sizes: Array<[string, number]>, source: string): { fields: Buffer[]; end: number } {
  let position = MANIFEST_HEADER_SIZE;
  const fields: Buffer[] = [];

  for (const [name, size] of sizes) {
    const end = position + size;
    if (end > data.length) rejectManifest(source, `length out of bounds (${name} ends at byte ${end}, manifest has ${data.length})`);
    fields.push(data.subarray(position, end));
    position = end;
  }
  return { fields, end: position };
}

function checkName(field: Buffer, offset: number, name: string, extra: string, source: string): string {
  const bad = firstInvalidNameByte(field, extra);
  if (bad >= 0) {
    const byte = (field[bad] ?? 0).toString(16).padStart(2, '0');
    rejectManifest(source, `invalid field (${name} byte 0x${byte} at offset ${offset + bad})`);
  }
  return field.toString('latin1');
}

function splitKeyIds(field: Buffer, source: string): Uint8Array[] {
  const keyIds: Uint8Array[] = [];
  for (let offset = 0; offset < field.length; offset += KEY_ID_SIZE) {
    keyIds.push(Uint8Array.from(field.subarray(offset, offset + KEY_ID_SIZE)));
  }

  const distinct = new Set(keyIds.map((keyId) => Buffer.from(keyId).toString('hex')));
  if (distinct.size !== keyIds.length) rejectManifest(source, 'invalid field (duplicate next-stage key id)');
  return keyIds;
}

/**
 * Parses a stage manifest and checks its structure; `source` names it in
 * errors, such as its file path. The signature is not checked here (see
 * verifyManifest). Throws INPUT_INVALID or LIMIT_EXCEEDED with the reason
 * in `data.reason`.
 */
export function parseManifest(bytes: Uint8Array, source = 'stage manifest'): StageManifest {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

  if (data.length > MANIFEST_MAX_SIZE) rejectManifest(source, `manifest too large (${data.length} bytes, limit ${MANIFEST_MAX_SIZE})`, 'LIMIT_EXCEEDED');
  if (data.length < OFFSET.flags) rejectManifest(source, `truncated manifest (${data.length} bytes, header is ${MANIFEST_HEADER_SIZE})`);
  if (!data.subarray(0, MANIFEST_MAGIC.length).equals(MANIFEST_MAGIC)) rejectManifest(source, 'bad magic');
  const formatVersion = data.readUInt32BE(OFFSET.formatVersion);
  if (formatVersion !== MANIFEST_FORMAT_VERSION) rejectManifest(source, `unsupported format version ${formatVersion}`);
  if (data.length < MANIFEST_HEADER_SIZE) rejectManifest(source, `truncated manifest (${data.length} bytes, header is ${MANIFEST_HEADER_SIZE})`);

  const header = parseHeader(data, source);
  const { fields, end } = takeFields(data, [
    ['stage name', header.stageNameSize],
    ['device profile id', header.deviceProfileSize],
    ['verity salt', header.verity?.saltSize ?? 0],
    ['next-stage key ids', header.nextKeyIdCount * KEY_ID_SIZE],
  ], source);
  const [stageField, profileField, saltField, keyIdField] = fields as [Buffer, Buffer, Buffer, Buffer];

  if (header.signedSize !== end) rejectManifest(source, `invalid field (signed size ${header.signedSize}, fields end at ${end})`);
  const signatureEnd = end + MANIFEST_SIGNATURE_SIZE;
  if (data.length < signatureEnd) rejectManifest(source, `truncated manifest (signature ends at byte ${signatureEnd}, manifest has ${data.length})`);
  if (data.length > signatureEnd) rejectManifest(source, `trailing data (signature ends at byte ${signatureEnd}, manifest has ${data.length})`);

  const stage = checkName(stageField, MANIFEST_HEADER_SIZE, 'stage name', STAGE_NAME_EXTRA, source);
  const deviceProfile = checkName(profileField, MANIFEST_HEADER_SIZE + header.stageNameSize, 'device profile id', DEVICE_PROFILE_EXTRA, source);
  const nextStageKeyIds = splitKeyIds(keyIdField, source);

  let verity: VerityParameters | undefined;
  if (header.verity !== undefined) {
    const { saltSize: _saltSize, ...parameters } = header.verity;
    verity = { ...parameters, salt: Uint8Array.from(saltField) };
  }

  return {
    formatVersion,
    stage,
    deviceProfile,
    imageSize: header.imageSize,
    imageSha512: Uint8Array.from(data.subarray(OFFSET.imageSha512, OFFSET.imageSha512 + SHA512_SIZE)),
    ...(verity ? { verity } : {}),
    rollbackIndexLocation: header.rollbackIndexLocation,
    rollbackIndex: header.rollbackIndex,
    nextStageKeyIds,
    signerKeyId: Uint8Array.from(data.subarray(OFFSET.signerKeyId, OFFSET.signerKeyId + KEY_ID_SIZE)),
    signedBytes: Uint8Array.from(data.subarray(0, end)),
    signature: Uint8Array.from(data.subarray(end, signatureEnd)),
  };
}
