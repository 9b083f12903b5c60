/**
 * Verification of stage manifests and stage images in TypeScript. It runs
 * the checks of qwamos-verify in the same order and with the same reasons,
 * so the build can check a stage exactly as the boot will.
 */
import { QwamosError } from '../core/errors.js';
import { manifestSignatureContext, type StageManifest } from './manifest.js';
import { readCounterStore, writeCounterStore } from './manifest-counters.js';
import { hashImage, imageFileSize, readVerityRootDigest } from './manifest-image.js';
import { isValidDeviceProfile, isValidStageName, parseManifest } from './manifest-parse.js';
import { mldsaKeyId, mldsaVerify } from './mldsa.js';

export interface ManifestTrust {
  /** Stage the manifest must name; it also selects the signature context. */
  stage: string;
  /** Raw ML-DSA-87 public keys trusted for this stage. */
  publicKeys: readonly Uint8Array[];
  /** Device profile id the manifest must name, when given. */
  deviceProfile?: string;
  /** Name of the manifest in errors, such as its path. */
  source?: string;
}

export interface StageCheck extends ManifestTrust {
  imagePath: string;
  /** Counter store file; the stage's counter is raised after success. Omit to skip the rollback check. */
  countersPath?: string;
  /** For dm-verity images: check the root hash block instead of hashing the whole image. */
  verityOnly?: boolean;
}

export interface StageCheckResult {
  manifest: StageManifest;
  /** True when the counter of the manifest's slot was raised to its rollback index. */
  counterRaised: boolean;
}

/** Throws VERIFY_FAILED with the console wording of qwamos-verify. */
export function failVerification(stage: string, reason: string): never {
  throw new QwamosError('VERIFY_FAILED', `verification failed: ${stage}: ${reason}`, { data: { stage, reason } });
}

function checkTrust(trust: ManifestTrust): void {
  if (!isValidStageName(trust.stage)) throw new QwamosError('INPUT_INVALID', `stage name '${trust.stage}' is invalid; use 1 to 32 of a-z 0-9 _ -, starting with a letter or digit`);
  if (trust.deviceProfile !== undefined && !isValidDeviceProfile(trust.deviceProfile)) {
    throw new QwamosError('INPUT_INVALID', `device profile id '${trust.deviceProfile}' is invalid; use 1 to 64 of a-z 0-9 . _ -, starting with a letter or digit`);
  }
  if (trust.publicKeys.length === 0) throw new QwamosError('INPUT_INVALID', `no public key given for stage ${trust.stage}; pass the keys trusted to sign it`);
}

/**
 * Parses `bytes` and checks the stage name, the device profile, the signer
 * key and the signature. Returns the manifest; throws INPUT_INVALID or
 * LIMIT_EXCEEDED for a malformed manifest and VERIFY_FAILED otherwise.
 */
export function verifyManifest(bytes: Uint8Array, trust: ManifestTrust): StageManifest {
  checkTrust(trust);
  const manifest = parseManifest(bytes, trust.source);

  if (manifest.stage !== trust.stage) failVerification(trust.stage, `stage mismatch (manifest is for ${manifest.stage})`);
  if (trust.deviceProfile !== undefined && manifest.deviceProfile !== trust.deviceProfile) {
    failVerification(trust.stage, `wrong device profile (manifest is for ${manifest.deviceProfile})`);
  }

  const signerKeyId = Buffer.from(manifest.signerKeyId);
  const publicKey = trust.publicKeys.find((key) => mldsaKeyId(key).equals(signerKeyId));
  if (publicKey === undefined) failVerification(trust.stage, 'unknown key');
  if (!mldsaVerify(publicKey, manifest.signedBytes, manifest.signature, manifestSignatureContext(trust.stage))) {
    failVerification(trust.stage, 'bad signature');
  }
  return manifest;
}

/**
 * Throws VERIFY_FAILED "key not allowed" unless `child` is signed by a key
 * that `parent` lists among the keys allowed to sign the next stage.
 */
export function checkNextStageSigner(parent: StageManifest, child: StageManifest): void {
  const signer = Buffer.from(child.signerKeyId);
  if (!parent.nextStageKeyIds.some((keyId) => signer.equals(keyId))) {
    failVerification(child.stage, `key not allowed (signer ${signer.toString('hex')} is not a next-stage key of stage ${parent.stage})`);
  }
}

async function checkImage(manifest: StageManifest, check: StageCheck): Promise<void> {
  const size = await imageFileSize(check.imagePath);
  if (size < manifest.imageSize) failVerification(check.stage, `image too small (${size} < ${manifest.imageSize} bytes)`);

  if (!check.verityOnly) {
    const { imageSha512 } = await hashImage(check.imagePath, manifest.imageSize);
    if (!Buffer.from(imageSha512).equals(manifest.imageSha512)) failVerification(check.stage, 'digest mismatch');
  }
  if (manifest.verity !== undefined) {
    const rootDigest = await readVerityRootDigest(check.imagePath, manifest.verity);
    if (!rootDigest.equals(manifest.verity.rootDigest)) failVerification(check.stage, 'verity root hash mismatch');
  }
}

/**
 * Checks a stage as qwamos-verify does at boot: the manifest and its
 * signature, the rollback index against the counter store, the image digest
 * or verity root. Raises the stage's counter only after every check passed.
 */
export async function verifyStage(manifestBytes: Uint8Array, check: StageCheck): Promise<StageCheckResult> {
  const manifest = verifyManifest(manifestBytes, check);
  if (check.verityOnly && manifest.verity === undefined) failVerification(check.stage, 'not a verity image');

  const counters = check.countersPath === undefined ? undefined : await readCounterStore(check.countersPath);
  const stored = counters?.[manifest.rollbackIndexLocation] ?? 0n;
  if (manifest.rollbackIndex < stored) failVerification(check.stage, `rollback (index ${manifest.rollbackIndex} < stored ${stored})`);

  await checkImage(manifest, check);

  if (counters === undefined || check.countersPath === undefined || manifest.rollbackIndex <= stored) {
    return { manifest, counterRaised: false };
  }
  counters[manifest.rollbackIndexLocation] = manifest.rollbackIndex;
  await writeCounterStore(check.countersPath, counters);
  return { manifest, counterRaised: true };
}
