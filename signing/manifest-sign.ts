/**
 * Signs stage manifests with pure, deterministic ML-DSA-87. The signer is
 * a function, so the secret key may stay in another process or device; its
 * signature is verified before it is used.
 */
import { QwamosError } from '../core/errors.js';
import { manifestSignatureContext, MANIFEST_SIGNATURE_SIZE, type UnsignedManifest } from './manifest.js';
import { encodeSignedPart } from './manifest-encode.js';
import { mldsaKeyId, mldsaVerify, type MldsaSigner } from './mldsa.js';

/**
 * Encodes `unsigned` with the key id of `signerPublicKey`, has `signer`
 * sign it with the context of the stage, and returns the complete manifest.
 * Throws VERIFY_FAILED when the returned signature does not verify with
 * `signerPublicKey`.
 */
export async function signManifest(unsigned: UnsignedManifest, signer: MldsaSigner, signerPublicKey: Uint8Array): Promise<Buffer> {
  const keyId = mldsaKeyId(signerPublicKey);
  const signedPart = encodeSignedPart(unsigned, keyId);
  const context = manifestSignatureContext(unsigned.stage);

  const signature = await signer(Uint8Array.from(signedPart), Uint8Array.from(context));

  if (!(signature instanceof Uint8Array) || signature.length !== MANIFEST_SIGNATURE_SIZE || !mldsaVerify(signerPublicKey, signedPart, signature, context)) {
    throw new QwamosError('VERIFY_FAILED', `the signer returned a signature for stage ${unsigned.stage} that does not verify with public key ${keyId.toString('hex')}; check that the signer holds the secret key of that public key and signs pure ML-DSA-87 with the given context`, {
      data: { stage: unsigned.stage, keyId: keyId.toString('hex') },
    });
  }
  return Buffer.concat([signedPart, signature]);
}
