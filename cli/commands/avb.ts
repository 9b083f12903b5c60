/**
 * `qwamos-build avb SUBCOMMAND`: Android Verified Boot 2.0 signing with
 * avbtool's subcommand and option names, so avbtool scripts carry over:
 * make_vbmeta_image, add_hash_footer, add_hashtree_footer,
 * extract_public_key, info_image and verify_image.
 *
 * Differences from avbtool 1.3: a salt that is not given is derived from
 * the partition name and image digest instead of read from /dev/urandom,
 * so outputs are reproducible. FEC is not implemented, so
 * add_hashtree_footer needs --do_not_generate_fec. Signing helpers,
 * encrypted keys and Android sparse images are not supported.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Command } from '../command.js';
import { parseCommandArgs as parseStrictArgs } from '../command.js';
import { writeFileAtomic } from '../../core/atomic.js';
import { QwamosError } from '../../core/errors.js';
import { decodeAvbPublicKey, encodeAvbPublicKey, readAvbKey } from '../../signing/avb-key.js';
import { addHashFooter, maxImageSizeForHashFooter, type AddHashFooterOptions } from '../../signing/avb-hash-footer.js';
import { addHashtreeFooter, maxImageSizeForHashtreeFooter, type AddHashtreeFooterOptions } from '../../signing/avb-hashtree-footer.js';
import { FOOTER_METADATA_RESERVE, readImageVbmeta } from '../../signing/avb-footer.js';
import { avbInfoJson, formatAvbInfo } from '../../signing/avb-info.js';
import {
  AVBTOOL_RELEASE_STRING,
  compareCodeUnits,
  makeVbmetaImage,
  requiredLibavbMinor,
  VBMETA_FLAG_HASHTREE_DISABLED,
  VBMETA_FLAG_VERIFICATION_DISABLED,
  type ChainPartitionSpec,
  type VbmetaOptions,
} from '../../signing/avb-vbmeta.js';
import { verifyImage, type ExpectedChainPartition, type VerifyImageReport } from '../../signing/avb-verify-image.js';
import type { VerityHashAlgorithm } from '../../images/verity.js';

// ---------------------------------------------------------------- options shared with avbtool

const COMMON_OPTIONS = {
  algorithm: { type: 'string' },
  key: { type: 'string' },
  public_key_metadata: { type: 'string' },
  rollback_index: { type: 'string' },
  rollback_index_location: { type: 'string' },
  internal_release_string: { type: 'string' },
  append_to_release_string: { type: 'string' },
  prop: { type: 'string', multiple: true },
  prop_from_file: { type: 'string', multiple: true },
  kernel_cmdline: { type: 'string', multiple: true },
  setup_rootfs_from_kernel: { type: 'string' },
  generate_dm_verity_cmdline_from_hashtree: { type: 'string' },
  include_descriptors_from_image: { type: 'string', multiple: true },
  print_required_libavb_version: { type: 'boolean' },
  chain_partition: { type: 'string', multiple: true },
  chain_partition_do_not_use_ab: { type: 'string', multiple: true },
  flags: { type: 'string' },
  set_hashtree_disabled_flag: { type: 'boolean' },
  set_verification_disabled_flag: { type: 'boolean' },
  signing_helper: { type: 'string' },
  signing_helper_with_files: { type: 'string' },
  json: { type: 'boolean' },
} as const;

const FOOTER_OPTIONS = {
  ...COMMON_OPTIONS,
  image: { type: 'string' },
  partition_size: { type: 'string' },
  partition_name: { type: 'string' },
  hash_algorithm: { type: 'string' },
  salt: { type: 'string' },
  calc_max_image_size: { type: 'boolean' },
  output_vbmeta_image: { type: 'string' },
  do_not_append_vbmeta_image: { type: 'boolean' },
  use_persistent_digest: { type: 'boolean' },
  do_not_use_ab: { type: 'boolean' },
} as const;

const COMMON_HELP = `Signing options (as avbtool):
  --algorithm NAME            NONE (default), SHA256_RSA2048, SHA256_RSA4096,
                              SHA256_RSA8192, SHA512_RSA2048, SHA512_RSA4096
                              or SHA512_RSA8192
  --key KEY.pem               RSA private key, PEM (PKCS#1 or PKCS#8, unencrypted)
  --rollback_index N          Rollback index (default 0)
  --rollback_index_location N Rollback index location, 0 to 31 (default 0)
  --flags N                   Header flags (1 hashtree disabled, 2 verification disabled)
  --set_hashtree_disabled_flag     Set flag 1: the device does not apply dm-verity
  --set_verification_disabled_flag Set flag 2: the device skips descriptor checks
  --internal_release_string S Release string (default '${AVBTOOL_RELEASE_STRING}')
  --append_to_release_string S  Text appended after a space
  --prop KEY:VALUE            Property descriptor; repeatable
  --prop_from_file KEY:PATH   Property descriptor with a file's bytes; repeatable
  --kernel_cmdline CMDLINE    Kernel command line descriptor; repeatable
  --chain_partition NAME:LOCATION:KEY.avbpubkey
                              Chain descriptor; repeatable
  --chain_partition_do_not_use_ab NAME:LOCATION:KEY.avbpubkey
  --include_descriptors_from_image IMAGE  Copy descriptors; repeatable
  --setup_rootfs_from_kernel IMAGE  dm-verity command line for IMAGE's hashtree
  --public_key_metadata PATH  Public key metadata blob
  --print_required_libavb_version  Print the required libavb version and stop
  --json                      Print the result as JSON on stdout
  -h, --help                  Show this help`;

// ---------------------------------------------------------------- commands

const makeVbmetaImageCommand: Command = {
  name: ['avb', 'make_vbmeta_image'],
  summary: 'Make a signed AVB vbmeta image (avbtool make_vbmeta_image)',
  help: `Usage: qwamos-build avb make_vbmeta_image --output FILE [OPTIONS]

Builds a vbmeta image byte for byte as avbtool 1.3 does.

Options:
  --output FILE               Output file
  --padding_size N            Pad the output with zeros to a multiple of N bytes
${COMMON_HELP}`,
  run: runMakeVbmetaImage,
};

const addHashFooterCommand: Command = {
  name: ['avb', 'add_hash_footer'],
  summary: 'Add a hash descriptor, vbmeta and footer to an image (avbtool add_hash_footer)',
  help: `Usage: qwamos-build avb add_hash_footer --image IMAGE --partition_name NAME --partition_size BYTES [OPTIONS]

Appends a signed vbmeta with a hash descriptor of IMAGE and the AVB footer,
replacing IMAGE atomically. An existing footer is replaced. The partition
must hold the image plus ${FOOTER_METADATA_RESERVE} bytes (64 KiB vbmeta + 4 KiB footer block).

Options:
  --image IMAGE               Image to add the footer to
  --partition_name NAME       Partition name without A/B suffix
  --partition_size BYTES      Partition size, a multiple of 4096
  --dynamic_partition_size    Use the smallest partition size that fits
  --hash_algorithm ALG        sha256 (default) or sha512
  --salt HEX                  Salt (default: derived from partition name and
                              image digest, so the output is reproducible)
  --calc_max_image_size       Print the largest image that fits and stop
  --output_vbmeta_image FILE  Also write the vbmeta blob to FILE
  --do_not_append_vbmeta_image  Leave IMAGE unchanged
  --use_persistent_digest     Leave the digest out (device stores it)
  --do_not_use_ab             The partition has no A/B suffix
${COMMON_HELP}`,
  run: runAddHashFooter,
};

const addHashtreeFooterCommand: Command = {
  name: ['avb', 'add_hashtree_footer'],
  summary: 'Add a dm-verity hash tree, vbmeta and footer to an image (avbtool add_hashtree_footer)',
  help: `Usage: qwamos-build avb add_hashtree_footer --image IMAGE --partition_name NAME --do_not_generate_fec [OPTIONS]

Appends a dm-verity (format 1) hash tree, a signed vbmeta with its hashtree
descriptor, and the AVB footer, replacing IMAGE atomically. FEC is not
implemented, so --do_not_generate_fec is required.

Options:
  --image IMAGE               Image to add the hash tree to
  --partition_name NAME       Partition name without A/B suffix (default '')
  --partition_size BYTES      Partition size, a multiple of 4096 (default 0:
                              the footer follows the vbmeta)
  --hash_algorithm ALG        sha1 (avbtool's default, with a warning), sha256
                              or sha512
  --block_size BYTES          Data and hash block size (default 4096)
  --salt HEX                  Salt (default: derived from partition name and
                              image digest, so the output is reproducible)
  --do_not_generate_fec       Required: FEC is not implemented
  --fec_num_roots N           Ignored without FEC
  --no_hashtree               Store no tree, only the root digest
  --check_at_most_once        dm-verity checks each block only once
  --setup_as_rootfs_from_kernel  Add the dm-verity kernel command line
  --calc_max_image_size       Print the largest image that fits and stop
  --output_vbmeta_image FILE  Also write the vbmeta blob to FILE
  --do_not_append_vbmeta_image  Leave IMAGE unchanged
  --use_persistent_digest     Leave the root digest out (device stores it)
  --do_not_use_ab             The partition has no A/B suffix
${COMMON_HELP}`,
  run: runAddHashtreeFooter,
};

const extractPublicKeyCommand: Command = {
  name: ['avb', 'extract_public_key'],
  summary: 'Write the AVB public key blob of a key (avb_custom_key) (avbtool extract_public_key)',
  help: `Usage: qwamos-build avb extract_public_key --key KEY.pem --output FILE [--json]

Writes the AVB public key blob of KEY.pem: the file chain descriptors pin
and that Pixel bootloaders accept with 'fastboot flash avb_custom_key FILE'.

Options:
  --key KEY.pem               RSA key, private or public PEM
  --output FILE               Output file
  --json                      Print size and SHA-256 of the blob as JSON
  -h, --help                  Show this help`,
  run: runExtractPublicKey,
};

const infoImageCommand: Command = {
  name: ['avb', 'info_image'],
  summary: 'Print the footer and vbmeta of an image (avbtool info_image)',
  help: `Usage: qwamos-build avb info_image --image IMAGE [--output FILE] [--output_pubkey FILE] [--json]

Prints the footer, vbmeta header and descriptors as avbtool prints them.

Options:
  --image IMAGE               Image with a footer, or a vbmeta image
  --output FILE               Write the text to FILE instead of stdout
  --output_pubkey FILE        Write the embedded public key blob to FILE
  --json                      Print the same facts as JSON
  -h, --help                  Show this help`,
  run: runInfoImage,
};

const verifyImageCommand: Command = {
  name: ['avb', 'verify_image'],
  summary: 'Verify an image: signature, rollback, footer and partition contents (avbtool verify_image)',
  help: `Usage: qwamos-build avb verify_image --image IMAGE [OPTIONS]

Verifies the vbmeta with libavb's rules and checks the data of every hash
and hashtree descriptor. A descriptor for partition NAME is checked against
NAME.EXT beside IMAGE unless --partition_image names another file. Exits 1
when verification fails.

Options:
  --image IMAGE               Image with a footer, or a vbmeta image
  --key KEY                   The embedded public key must be this key
                              (PEM, or an AVB public key blob)
  --expected_chain_partition NAME:LOCATION:KEY.avbpubkey
                              Chain descriptor NAME must match; repeatable
  --follow_chain_partitions   Also verify the chained partition images
  --accept_zeroed_hashtree    Accept hash trees zeroed by avbtool zero_hashtree
  --stored_rollback_index LOCATION:VALUE
                              Rollback index a device has stored; images
                              below it are rejected; repeatable
  --partition_image NAME:PATH Image file of partition NAME; repeatable
  --require_signed            Reject algorithm NONE, as a locked device does
  --json                      Print the report as JSON
  -h, --help                  Show this help`,
  run: runVerifyImage,
};

const avbGroupCommand: Command = {
  name: ['avb'],
  summary: 'Android Verified Boot 2.0 signing with avbtool\'s subcommands',
  help: `Usage: qwamos-build avb SUBCOMMAND [OPTIONS]

Subcommands:
  avb make_vbmeta_image       ${makeVbmetaImageCommand.summary}
  avb add_hash_footer         ${addHashFooterCommand.summary}
  avb add_hashtree_footer     ${addHashtreeFooterCommand.summary}
  avb extract_public_key      ${extractPublicKeyCommand.summary}
  avb info_image              ${infoImageCommand.summary}
  avb verify_image            ${verifyImageCommand.summary}

Run 'qwamos-build avb SUBCOMMAND --help' for the options of one subcommand.`,
  async run(argv) {
    throw new QwamosError('USAGE', `avb: unknown subcommand '${argv.join(' ')}'; run 'qwamos-build avb --help' for the list`);
  },
};

export const AVB_COMMANDS: Command[] = [
  avbGroupCommand,
  makeVbmetaImageCommand,
  addHashFooterCommand,
  addHashtreeFooterCommand,
  extractPublicKeyCommand,
  infoImageCommand,
  verifyImageCommand,
];

// ---------------------------------------------------------------- make_vbmeta_image

async function runMakeVbmetaImage(argv: string[]): Promise<number> {
  const command = 'avb make_vbmeta_image';
  const { values } = parseCommandArgs(command, argv, { ...COMMON_OPTIONS, output: { type: 'string' }, padding_size: { type: 'string' } });
  const options = await vbmetaOptionsFromArgs(command, values);

  if (values.print_required_libavb_version) return printRequiredVersion(requiredLibavbMinor(options));
  const output = requireOption(command, values.output, '--output');
  const paddingSize = values.padding_size === undefined ? 0 : parseSafeNumber(values.padding_size, '--padding_size');

  const image = await makeVbmetaImage({ ...options, output, paddingSize });
  if (values.json) printJsonResult({ ok: true, output, size: image.length, ...vbmetaSummary(image) });
  return 0;
}

// ---------------------------------------------------------------- add_hash_footer

async function runAddHashFooter(argv: string[]): Promise<number> {
  const command = 'avb add_hash_footer';
  const { values } = parseCommandArgs(command, argv, { ...FOOTER_OPTIONS, dynamic_partition_size: { type: 'boolean' } });
  const partitionSize = values.partition_size === undefined ? undefined : parseSafeNumber(values.partition_size, '--partition_size');

  if (values.calc_max_image_size) {
    if (values.dynamic_partition_size) throw new QwamosError('USAGE', `${command}: --calc_max_image_size does not work with --dynamic_partition_size`);
    const size = requireOption(command, partitionSize, '--partition_size');
    if (size < FOOTER_METADATA_RESERVE) {
      throw new QwamosError('LIMIT_EXCEEDED', `${command}: partition size ${size} bytes is too small; a hash footer needs at least ${FOOTER_METADATA_RESERVE} bytes`);
    }
    return printLine(String(maxImageSizeForHashFooter(size)));
  }

  const options = await vbmetaOptionsFromArgs(command, values);
  const footerOptions: AddHashFooterOptions = {
    ...options,
    partitionName: requireOption(command, values.partition_name, '--partition_name'),
    partitionSize,
    dynamicPartitionSize: values.dynamic_partition_size ?? false,
    hashAlgorithm: (values.hash_algorithm ?? 'sha256') as AddHashFooterOptions['hashAlgorithm'],
    salt: values.salt === undefined ? undefined : parseSalt(values.salt),
    usePersistentDigest: values.use_persistent_digest ?? false,
    doNotUseAb: values.do_not_use_ab ?? false,
    outputVbmetaImage: values.output_vbmeta_image,
    doNotAppendVbmetaImage: values.do_not_append_vbmeta_image ?? false,
  };
  if (values.print_required_libavb_version) {
    const footerMinor = footerOptions.usePersistentDigest || footerOptions.doNotUseAb ? 1 : 0;
    return printRequiredVersion(requiredLibavbMinor({ ...options, requiredLibavbMinor: footerMinor }));
  }

  const image = requireOption(command, values.image, '--image');
  const result = await addHashFooter(image, footerOptions);
  if (values.json) printJsonResult({ ok: true, image, partitionSize: result.partitionSize, maxImageSize: result.maxImageSize, footer: result.footer ?? null, descriptor: result.descriptor, ...vbmetaSummary(result.vbmeta) });
  return 0;
}

// ---------------------------------------------------------------- add_hashtree_footer

async function runAddHashtreeFooter(argv: string[]): Promise<number> {
  const command = 'avb add_hashtree_footer';
  const { values } = parseCommandArgs(command, argv, {
    ...FOOTER_OPTIONS,
    block_size: { type: 'string' },
    generate_fec: { type: 'boolean' },
    do_not_generate_fec: { type: 'boolean' },
    fec_num_roots: { type: 'string' },
    setup_as_rootfs_from_kernel: { type: 'boolean' },
    no_hashtree: { type: 'boolean' },
    check_at_most_once: { type: 'boolean' },
  });
  const partitionSize = values.partition_size === undefined ? 0 : parseSafeNumber(values.partition_size, '--partition_size');
  const blockSize = values.block_size === undefined ? 4096 : parseSafeNumber(values.block_size, '--block_size');
  const hashAlgorithm = hashtreeAlgorithm(values.hash_algorithm, values.calc_max_image_size ?? false);

  if (values.calc_max_image_size) return printLine(String(maxImageSizeForHashtreeFooter(partitionSize, hashAlgorithm, blockSize)));

  const options = await vbmetaOptionsFromArgs(command, values);
  const footerOptions: AddHashtreeFooterOptions = {
    ...options,
    partitionName: values.partition_name ?? '',
    partitionSize,
    hashAlgorithm,
    blockSize,
    salt: values.salt === undefined ? undefined : parseSalt(values.salt),
    // avbtool generates FEC unless --do_not_generate_fec is given, so its absence is the FEC request rejected here.
    generateFec: !(values.do_not_generate_fec ?? false),
    noHashtree: values.no_hashtree ?? false,
    usePersistentRootDigest: values.use_persistent_digest ?? false,
    doNotUseAb: values.do_not_use_ab ?? false,
    checkAtMostOnce: values.check_at_most_once ?? false,
    setupAsRootfsFromKernel: values.setup_as_rootfs_from_kernel ?? false,
    outputVbmetaImage: values.output_vbmeta_image,
    doNotAppendVbmetaImage: values.do_not_append_vbmeta_image ?? false,
  };
  if (values.print_required_libavb_version) {
    const footerMinor = footerOptions.usePersistentRootDigest || footerOptions.doNotUseAb || footerOptions.checkAtMostOnce ? 1 : 0;
    return printRequiredVersion(requiredLibavbMinor({ ...options, requiredLibavbMinor: footerMinor }));
  }

  const image = requireOption(command, values.image, '--image');
  const result = await addHashtreeFooter(image, footerOptions);
  if (values.json) printJsonResult({ ok: true, image, partitionSize: result.partitionSize, maxImageSize: result.maxImageSize, footer: result.footer ?? null, descriptor: result.descriptor, ...vbmetaSummary(result.vbmeta) });
  return 0;
}

/** avbtool defaults add_hashtree_footer to sha1 for backwards compatibility and warns about it. */
function hashtreeAlgorithm(value: string | undefined, quiet: boolean): VerityHashAlgorithm {
  if (value !== undefined) return value as VerityHashAlgorithm;
  if (!quiet) {
    process.stderr.write("Warning: 'avb add_hashtree_footer' executed without an explicit\n--hash_algorithm option. Defaulting to sha1 for backwards compatibility.\nPlease use '--hash_algorithm sha256'.\n");
  }
  return 'sha1';
}

// ---------------------------------------------------------------- extract_public_key

async function runExtractPublicKey(argv: string[]): Promise<number> {
  const command = 'avb extract_public_key';
  const { values } = parseCommandArgs(command, argv, { key: { type: 'string' }, output: { type: 'string' }, json: { type: 'boolean' } });
  const key = await readAvbKey(requireOption(command, values.key, '--key'));
  const output = requireOption(command, values.output, '--output');

  const blob = encodeAvbPublicKey(key);
  await writeFileAtomic(output, blob);
  if (values.json) printJsonResult({ ok: true, output, size: blob.length, keyBits: key.keyBits, sha256: sha256Hex(blob) });
  return 0;
}

// ---------------------------------------------------------------- info_image

async function runInfoImage(argv: string[]): Promise<number> {
  const command = 'avb info_image';
  const { values } = parseCommandArgs(command, argv, {
    image: { type: 'string' },
    output: { type: 'string' },
    output_pubkey: { type: 'string' },
    json: { type: 'boolean' },
  });
  const image = await readImageVbmeta(requireOption(command, values.image, '--image'));

  if (values.output_pubkey) await writeFileAtomic(values.output_pubkey, image.vbmeta.publicKey);
  const text = values.json ? `${JSON.stringify(avbInfoJson(image), null, 2)}\n` : formatAvbInfo(image);
  if (values.output) await writeFileAtomic(values.output, text);
  else process.stdout.write(text);
  return 0;
}

// ---------------------------------------------------------------- verify_image

async function runVerifyImage(argv: string[]): Promise<number> {
  const command = 'avb verify_image';
  const { values } = parseCommandArgs(command, argv, {
    image: { type: 'string' },
    key: { type: 'string' },
    expected_chain_partition: { type: 'string', multiple: true },
    follow_chain_partitions: { type: 'boolean' },
    accept_zeroed_hashtree: { type: 'boolean' },
    stored_rollback_index: { type: 'string', multiple: true },
    partition_image: { type: 'string', multiple: true },
    require_signed: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const imagePath = requireOption(command, values.image, '--image');
  const json = values.json ?? false;
  const say = (line: string): void => {
    if (!json) process.stdout.write(`${line}\n`);
  };

  const expectedPublicKey = values.key ? await readPublicKeyBlob(values.key) : undefined;
  say(values.key ? `Verifying image ${imagePath} using key at ${values.key}` : `Verifying image ${imagePath} using embedded public key`);

  const report = await verifyImage(imagePath, {
    expectedPublicKey,
    rollbackIndexes: new Map((values.stored_rollback_index ?? []).map(parseStoredRollbackIndex)),
    allowUnsigned: !(values.require_signed ?? false),
    partitionImages: Object.fromEntries((values.partition_image ?? []).map((value) => splitPair(value, '--partition_image', 'NAME:PATH'))),
    expectedChainPartitions: Object.fromEntries(await Promise.all((values.expected_chain_partition ?? []).map(readExpectedChainPartition))),
    followChainPartitions: values.follow_chain_partitions ?? false,
    acceptZeroedHashtree: values.accept_zeroed_hashtree ?? false,
    onMessage: say,
  });

  if (json) printJsonResult({ ok: true, ...reportJson(report) });
  return 0;
}

function reportJson(report: VerifyImageReport): Record<string, unknown> {
  const { verified } = report;
  return {
    image: report.image,
    footer: report.footer ?? null,
    algorithm: verified.algorithm.name,
    rollbackIndex: verified.rollbackIndex.toString(),
    rollbackIndexLocation: verified.rollbackIndexLocation,
    publicKeySha256: verified.publicKeySha256,
    vbmetaSha256: sha256Hex(verified.vbmeta.bytes),
    descriptors: report.descriptors,
    chained: report.chained.map(reportJson),
  };
}

/** Reads --key of verify_image: a PEM key, or an AVB public key blob such as an avb_custom_key file. */
async function readPublicKeyBlob(keyPath: string): Promise<Buffer> {
  const bytes = await readInputFile(keyPath, '--key');
  if (bytes.includes('-----BEGIN')) return encodeAvbPublicKey(await readAvbKey(keyPath));

  try {
    decodeAvbPublicKey(bytes);
  } catch (error) {
    throw new QwamosError('INPUT_INVALID', `--key ${keyPath} is neither a PEM key nor an AVB public key blob: ${(error as Error).message}`, { cause: error });
  }
  return bytes;
}

async function readExpectedChainPartition(value: string): Promise<[string, ExpectedChainPartition]> {
  const [name, location, keyPath] = splitChainArgument(value, '--expected_chain_partition');
  return [name, { rollbackIndexLocation: location, publicKey: await readInputFile(keyPath, '--expected_chain_partition') }];
}

function parseStoredRollbackIndex(value: string): [number, bigint] {
  const [location, index] = splitPair(value, '--stored_rollback_index', 'LOCATION:VALUE');
  return [parseSafeNumber(location, '--stored_rollback_index location'), parseNumber(index, '--stored_rollback_index value')];
}

// ---------------------------------------------------------------- vbmeta options from avbtool arguments

type CommonValues = {
  [K in keyof typeof COMMON_OPTIONS]?: (typeof COMMON_OPTIONS)[K] extends { multiple: true } ? string[] : (typeof COMMON_OPTIONS)[K] extends { type: 'boolean' } ? boolean : string;
};

/** Translates avbtool's common signing options into VbmetaOptions, reading the files they name. */
async function vbmetaOptionsFromArgs(command: string, values: CommonValues): Promise<VbmetaOptions> {
  if (values.signing_helper !== undefined || values.signing_helper_with_files !== undefined) {
    throw new QwamosError('USAGE', `${command}: --signing_helper and --signing_helper_with_files are not supported; pass the private key with --key`);
  }

  let flags = values.flags === undefined ? 0 : parseSafeNumber(values.flags, '--flags');
  if (values.set_hashtree_disabled_flag) flags |= VBMETA_FLAG_HASHTREE_DISABLED;
  if (values.set_verification_disabled_flag) flags |= VBMETA_FLAG_VERIFICATION_DISABLED;

  const rootfsImage = values.setup_rootfs_from_kernel ?? values.generate_dm_verity_cmdline_from_hashtree;
  return {
    algorithm: values.algorithm ?? 'NONE',
    key: values.key === undefined ? undefined : await readAvbKey(values.key),
    rollbackIndex: values.rollback_index === undefined ? 0n : parseNumber(values.rollback_index, '--rollback_index'),
    rollbackIndexLocation: values.rollback_index_location === undefined ? 0 : parseSafeNumber(values.rollback_index_location, '--rollback_index_location'),
    flags,
    releaseString: values.internal_release_string,
    appendToReleaseString: values.append_to_release_string,
    chainPartitions: await readChainPartitions(values.chain_partition ?? [], values.chain_partition_do_not_use_ab ?? []),
    properties: await readProperties(values.prop ?? [], values.prop_from_file ?? []),
    rootfsHashtrees: rootfsImage === undefined ? [] : [await firstHashtree(rootfsImage)],
    kernelCmdlines: values.kernel_cmdline ?? [],
    includeDescriptorsFrom: await Promise.all((values.include_descriptors_from_image ?? []).map(async (image) => (await readImageVbmeta(image)).vbmeta)),
    publicKeyMetadata: values.public_key_metadata === undefined ? undefined : await readInputFile(values.public_key_metadata, '--public_key_metadata'),
  };
}

/** avbtool sorts all --chain_partition and --chain_partition_do_not_use_ab arguments as strings. */
async function readChainPartitions(useAb: string[], doNotUseAb: string[]): Promise<ChainPartitionSpec[]> {
  const all = [...useAb.map((value) => ({ value, doNotUseAb: false })), ...doNotUseAb.map((value) => ({ value, doNotUseAb: true }))];
  all.sort((a, b) => compareCodeUnits(a.value, b.value));

  const chains: ChainPartitionSpec[] = [];
  for (const { value, doNotUseAb: flag } of all) {
    const [partitionName, rollbackIndexLocation, keyPath] = splitChainArgument(value, '--chain_partition');
    chains.push({ partitionName, rollbackIndexLocation, publicKey: await readInputFile(keyPath, '--chain_partition'), doNotUseAb: flag });
  }
  return chains;
}

async function readProperties(props: string[], propsFromFile: string[]): Promise<NonNullable<VbmetaOptions['properties']>> {
  const properties: NonNullable<VbmetaOptions['properties']> = props.map((value) => {
    const [key, text] = splitPair(value, '--prop', 'KEY:VALUE');
    return { key, value: text };
  });
  for (const value of propsFromFile) {
    const [key, filePath] = splitPair(value, '--prop_from_file', 'KEY:PATH');
    properties.push({ key, value: await readInputFile(filePath, '--prop_from_file') });
  }
  return properties;
}

async function firstHashtree(imagePath: string): Promise<NonNullable<VbmetaOptions['rootfsHashtrees']>[number]> {
  const { vbmeta } = await readImageVbmeta(imagePath);
  const hashtree = vbmeta.descriptors.find((descriptor) => descriptor.kind === 'hashtree');
  if (hashtree?.kind !== 'hashtree') {
    throw new QwamosError('INPUT_INVALID', `--setup_rootfs_from_kernel: ${imagePath} has no hashtree descriptor; add one with 'avb add_hashtree_footer' first`);
  }
  return hashtree;
}

/** Splits NAME:LOCATION:PATH as avbtool does: exactly three fields, the location a decimal number. */
function splitChainArgument(value: string, option: string): [string, number, string] {
  const fields = value.split(':');
  if (fields.length !== 3 || !/^\d+$/.test(fields[1] ?? '')) {
    throw new QwamosError('USAGE', `${option} '${value}' is malformed; expected NAME:LOCATION:KEY_PATH, for example vbmeta_system:1:system.avbpubkey`);
  }
  return [fields[0] as string, Number(fields[1]), fields[2] as string];
}

/** Splits at the first ':' as avbtool does for KEY:VALUE. */
function splitPair(value: string, option: string, form: string): [string, string] {
  const index = value.indexOf(':');
  if (index === -1) throw new QwamosError('USAGE', `${option} '${value}' is malformed; expected ${form}`);
  return [value.slice(0, index), value.slice(index + 1)];
}

// ---------------------------------------------------------------- argument parsing

type OptionSpec = Parameters<typeof parseStrictArgs>[2];

/**
 * Parses like parseCommandArgs, but first expands unambiguous prefixes of
 * long options (--output_vbmeta for --output_vbmeta_image), because
 * avbtool's argparse accepts them and scripts use them.
 */
function parseCommandArgs<T extends OptionSpec>(command: string, argv: string[], options: T): ReturnType<typeof parseStrictArgs<T>> {
  return parseStrictArgs(command, expandAbbreviations(command, argv, Object.keys(options)), options);
}

function expandAbbreviations(command: string, argv: string[], names: string[]): string[] {
  const expanded: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index] as string;
    if (argument === '--') {
      expanded.push(...argv.slice(index));
      break;
    }
    if (!argument.startsWith('--')) {
      expanded.push(argument);
      continue;
    }

    const [name, ...value] = argument.slice(2).split('=');
    const candidates = names.filter((candidate) => candidate.startsWith(name as string));
    if (names.includes(name as string) || candidates.length === 0) {
      expanded.push(argument);
    } else if (candidates.length === 1) {
      expanded.push(`--${candidates[0]}${value.length > 0 ? `=${value.join('=')}` : ''}`);
    } else {
      throw new QwamosError('USAGE', `${command}: ambiguous option --${name} could match ${candidates.map((candidate) => `--${candidate}`).join(', ')}`);
    }
  }
  return expanded;
}

// ---------------------------------------------------------------- small helpers

/** Parses a number as Python's int(text, 0), which avbtool uses: decimal, 0x, 0o or 0b, with optional underscores. */
function parseNumber(text: string, option: string): bigint {
  const trimmed = text.trim();
  if (!/^(0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+|[1-9](_?\d)*|0(_?0)*)$/.test(trimmed)) {
    throw new QwamosError('USAGE', `${option} '${text}' is not a non-negative integer; give a decimal or 0x-prefixed number`);
  }
  return BigInt(trimmed.replaceAll('_', '').replace(/^0[oO]/, '0o').replace(/^0[bB]/, '0b'));
}

function parseSafeNumber(text: string, option: string): number {
  const value = parseNumber(text, option);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new QwamosError('USAGE', `${option} '${text}' is too large`);
  return Number(value);
}

/** Parses --salt as binascii.unhexlify does: an even number of hex digits, possibly none. */
function parseSalt(text: string): Buffer {
  if (!/^([0-9a-fA-F]{2})*$/.test(text)) {
    throw new QwamosError('USAGE', `--salt '${text}' is not hexadecimal with an even number of digits`);
  }
  return Buffer.from(text, 'hex');
}

function requireOption<T>(command: string, value: T | undefined, option: string): T {
  if (value === undefined) throw new QwamosError('USAGE', `${command}: ${option} is required; run 'qwamos-build ${command} --help' for the options`);
  return value;
}

async function readInputFile(filePath: string, option: string): Promise<Buffer> {
  try {
    return await readFile(filePath);
  } catch (error) {
    throw new QwamosError('INPUT_NOT_FOUND', `${option}: cannot read ${filePath}: ${(error as Error).message}`, { cause: error });
  }
}

function vbmetaSummary(vbmeta: Buffer): Record<string, unknown> {
  return { vbmetaSize: vbmeta.length, vbmetaSha256: sha256Hex(vbmeta) };
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function printRequiredVersion(minor: number): number {
  return printLine(`1.${minor}`);
}

function printLine(line: string): number {
  process.stdout.write(`${line}\n`);
  return 0;
}

/** Prints JSON with byte arrays as hex and 64-bit numbers as decimal strings. */
function printJsonResult(value: Record<string, unknown>): void {
  const text = JSON.stringify(value, (_key, item: unknown) => {
    if (typeof item === 'bigint') return item.toString();
    if (item && typeof item === 'object' && (item as { type?: string }).type === 'Buffer' && Array.isArray((item as { data?: unknown }).data)) {
      return Buffer.from((item as { data: number[] }).data).toString('hex');
    }
    if (item instanceof Uint8Array) return Buffer.from(item).toString('hex');
    return item;
  }, 2);
  process.stdout.write(`${text}\n`);
}
