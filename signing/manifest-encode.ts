/**
 * Stage manifest encoder: writes the header and variable area that the
 * signature covers. The result is checked by parsing it again, so the
 * encoder never writes bytes that the parsers reject.
 */
import { QwamosError } from '../core/errors.js';
import {
  DEVICE_PROFILE_MAX,
  FLAG_VERITY,
  KEY_ID_SIZE,
  MANIFEST_FORMAT_VERSION,
  MANIFEST_HEADER_SIZE,
  MANIFEST_MAGIC,
  MANIFEST_SIGNATURE_SIZE,
  NEXT_KEY_IDS_MAX,
  OFFSET,
  ROLLBACK_LOCATIONS,
  SHA512_SIZE,
  STAGE_NAME_MAX,
  VERITY_ALGORITHMS,
  VERITY_SALT_MAX,
  type UnsignedManifest,
  type VerityParameters,
} from './manifest.js';
import { isValidDeviceProfile, isValidStageName, parseManifest } from './manifest-parse.js';

const U64_MAX = (1n << 64n) - 1n;

function invalid(message: string): never {
  throw new QwamosError('INPUT_INVALID', message);
}

function checkBytes(value: Uint8Array, size: number, what: string): void {
  if (value.length !== size) invalid(`${what} has ${value.length} bytes; it must have ${size}`);
}

function checkU64(value: bigint, what: string): void {
  if (typeof value !== 'bigint' || value < 0n || value > U64_MAX) invalid(`${what} ${String(value)} is not an unsigned 64-bit integer; pass a bigint from 0 to 2^64-1`);
}

function checkVerity(verity: VerityParameters): void {
  const algorithm = VERITY_ALGORITHMS[verity.hashAlgorithm];
  if (algorithm === undefined) invalid(`verity hash algorithm '${String(verity.hashAlgorithm)}' is not supported; use sha256 or sha512`);
  checkBytes(verity.rootDigest, algorithm.digestSize, `verity root digest (${verity.hashAlgorithm})`);
  if (verity.salt.length > VERITY_SALT_MAX) {
    throw new QwamosError('LIMIT_EXCEEDED', `verity salt has ${verity.salt.length} bytes; the manifest allows at most ${VERITY_SALT_MAX}`);
  }
  for (const [name, value] of [['data block size', verity.dataBlockSize], ['hash block size', verity.hashBlockSize]] as const) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) invalid(`verity ${name} ${value} is not an unsigned 32-bit integer`);
  }
  checkU64(verity.dataBlockCount, 'verity data block count');
  checkU64(verity.hashTreeOffset, 'verity hash tree offset');
}

/** Checks the values that must fit their header fields before they are written. */
function checkUnsigned(unsigned: UnsignedManifest, signerKeyId: Uint8Array): void {
  if (!isValidStageName(unsigned.stage)) {
    invalid(`stage name '${unsigned.stage}' is invalid; use 1 to ${STAGE_NAME_MAX} of a-z 0-9 _ -, starting with a letter or digit`);
  }
  if (!isValidDeviceProfile(unsigned.deviceProfile)) {
    invalid(`device profile id '${unsigned.deviceProfile}' is invalid; use 1 to ${DEVICE_PROFILE_MAX} of a-z 0-9 . _ -, starting with a letter or digit`);
  }
  checkU64(unsigned.imageSize, 'image size');
  checkU64(unsigned.rollbackIndex, 'rollback index');
  checkBytes(unsigned.imageSha512, SHA512_SIZE, 'image SHA-512');
  checkBytes(signerKeyId, KEY_ID_SIZE, 'signer key id');
  if (!Number.isInteger(unsigned.rollbackIndexLocation) || unsigned.rollbackIndexLocation < 0 || unsigned.rollbackIndexLocation >= ROLLBACK_LOCATIONS) {
    invalid(`rollback index location ${unsigned.rollbackIndexLocation} is out of range; use 0 to ${ROLLBACK_LOCATIONS - 1}`);
  }
  if (unsigned.nextStageKeyIds.length > NEXT_KEY_IDS_MAX) {
    throw new QwamosError('LIMIT_EXCEEDED', `${unsigned.nextStageKeyIds.length} next-stage key ids given; the manifest allows at most ${NEXT_KEY_IDS_MAX}`);
  }
  unsigned.nextStageKeyIds.forEach((keyId, index) => checkBytes(keyId, KEY_ID_SIZE, `next-stage key id ${index}`));
  if (unsigned.verity !== undefined) checkVerity(unsigned.verity);
}

function writeVerity(header: Buffer, verity: VerityParameters): void {
  header.writeUInt32BE(VERITY_ALGORITHMS[verity.hashAlgorithm].code, OFFSET.verityAlgorithm);
  header.writeUInt32BE(verity.dataBlockSize, OFFSET.verityDataBlockSize);
  header.writeUInt32BE(verity.hashBlockSize, OFFSET.verityHashBlockSize);
  header.writeUInt32BE(verity.salt.length, OFFSET.veritySaltSize);
  header.writeBigUInt64BE(verity.dataBlockCount, OFFSET.verityDataBlockCount);
  header.writeBigUInt64BE(verity.hashTreeOffset, OFFSET.verityHashTreeOffset);
  header.set(verity.rootDigest, OFFSET.verityRootDigest);
}

/**
 * Encodes the part of a manifest that the signature covers: the header and
 * the variable area, with `signerKeyId` in the header. Throws INPUT_INVALID
 * or LIMIT_EXCEEDED naming the field that does not fit the format.
 */
export function encodeSignedPart(unsigned: UnsignedManifest, signerKeyId: Uint8Array): Buffer {
  checkUnsigned(unsigned, signerKeyId);

  const stageName = Buffer.from(unsigned.stage, 'latin1');
  const deviceProfile = Buffer.from(unsigned.deviceProfile, 'latin1');
  const salt = unsigned.verity?.salt ?? new Uint8Array(0);
  const variableArea = Buffer.concat([stageName, deviceProfile, salt, ...unsigned.nextStageKeyIds]);
  const header = Buffer.alloc(MANIFEST_HEADER_SIZE);

  MANIFEST_MAGIC.copy(header, OFFSET.magic);
  header.writeUInt32BE(MANIFEST_FORMAT_VERSION, OFFSET.formatVersion);
  header.writeUInt32BE(unsigned.verity ? FLAG_VERITY : 0, OFFSET.flags);
  header.writeUInt32BE(MANIFEST_HEADER_SIZE + variableArea.length, OFFSET.signedSize);
  header.writeUInt32BE(MANIFEST_SIGNATURE_SIZE, OFFSET.signatureSize);
  header.writeBigUInt64BE(unsigned.imageSize, OFFSET.imageSize);
  header.writeBigUInt64BE(unsigned.rollbackIndex, OFFSET.rollbackIndex);
  header.writeUInt32BE(unsigned.rollbackIndexLocation, OFFSET.rollbackIndexLocation);
  header[OFFSET.stageNameSize] = stageName.length;
  header[OFFSET.deviceProfileSize] = deviceProfile.length;
  header[OFFSET.nextKeyIdCount] = unsigned.nextStageKeyIds.length;
  header.set(unsigned.imageSha512, OFFSET.imageSha512);
  header.set(signerKeyId, OFFSET.signerKeyId);
  if (unsigned.verity) writeVerity(header, unsigned.verity);

  const signedPart = Buffer.concat([header, variableArea]);
  parseManifest(Buffer.concat([signedPart, Buffer.alloc(MANIFEST_SIGNATURE_SIZE)]), `stage manifest for stage ${unsigned.stage}`);
  return signedPart;
}
