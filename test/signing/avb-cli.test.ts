import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../cli/main.js';
import type { AvbHashDescriptor } from '../../signing/avb-descriptors.js';
import { readImageVbmeta } from '../../signing/avb-footer.js';
import { KNOWN, keyPath, temporaryFolder } from './avb-fixtures.js';

interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in this process and captures what it writes. */
async function cli(args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const status = await main(args);
    return { status, stdout, stderr };
  } finally {
    vi.restoreAllMocks();
  }
}

afterEach(() => {
  vi.restoreAllMocks();
});

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function makeImage(folder: string, name: string, size: number): Promise<string> {
  const imagePath = path.join(folder, name);
  const content = Buffer.alloc(size);
  for (let offset = 0; offset < size; offset += 32) createHash('sha256').update(`${name}:${offset}`).digest().copy(content, offset);
  await writeFile(imagePath, content);
  return imagePath;
}

describe('avb extract_public_key', () => {
  it('writes the known public key blob', async () => {
    const folder = await temporaryFolder();
    const output = path.join(folder, 'key.avbpubkey');
    const result = await cli(['avb', 'extract_public_key', '--key', keyPath(2048), '--output', output, '--json']);

    expect(result.status).toBe(0);
    expect(sha256(await readFile(output))).toBe(KNOWN.publicKeyBlobSha256);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: true, size: 520, keyBits: 2048, sha256: KNOWN.publicKeyBlobSha256 });
  });

  it('names a missing key file', async () => {
    const result = await cli(['avb', 'extract_public_key', '--key', '/nonexistent/key.pem', '--output', '/tmp/x']);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/cannot read key file \/nonexistent\/key\.pem/);
  });
});

describe('avb make_vbmeta_image', () => {
  it('writes the known vbmeta with avbtool options', async () => {
    const folder = await temporaryFolder();
    const output = path.join(folder, 'vbmeta.img');
    const result = await cli([
      'avb', 'make_vbmeta_image', '--algorithm', 'SHA256_RSA2048', '--key', keyPath(2048),
      '--rollback_index', '0', '--rollback_index_location', '0', '--flags', '0', '--internal_release_string', '', '--output', output,
    ]);

    expect(result).toEqual({ status: 0, stdout: '', stderr: '' });
    const written = await readFile(output);
    expect(written.length).toBe(KNOWN.vbmetaSize);
    expect(sha256(written)).toBe(KNOWN.vbmetaSha256);
  });

  it('prints the required libavb version', async () => {
    const result = await cli(['avb', 'make_vbmeta_image', '--rollback_index_location', '1', '--print_required_libavb_version']);
    expect(result).toEqual({ status: 0, stdout: '1.2\n', stderr: '' });
  });

  it('rejects a chain partition at location 0 with status 2', async () => {
    const folder = await temporaryFolder();
    const keyBlob = path.join(folder, 'boot.avbpubkey');
    await cli(['avb', 'extract_public_key', '--key', keyPath(2048), '--output', keyBlob]);

    const result = await cli(['avb', 'make_vbmeta_image', '--chain_partition', `boot:0:${keyBlob}`, '--output', path.join(folder, 'v.img')]);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/chain partition 'boot' has rollback index location 0; chained partitions need location 1 or larger/);
  });

  it('rejects a duplicate chain location with status 2', async () => {
    const folder = await temporaryFolder();
    const keyBlob = path.join(folder, 'k.avbpubkey');
    await cli(['avb', 'extract_public_key', '--key', keyPath(2048), '--output', keyBlob]);

    const result = await cli(['avb', 'make_vbmeta_image', '--chain_partition', `boot:2:${keyBlob}`, '--chain_partition', `init_boot:2:${keyBlob}`, '--output', path.join(folder, 'v.img')]);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/rollback index location 2 of chain partition 'init_boot' is already used by chain partition 'boot'/);
  });

  it('rejects a malformed chain argument', async () => {
    const result = await cli(['avb', 'make_vbmeta_image', '--chain_partition', 'boot:1', '--output', '/tmp/unused.img']);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/--chain_partition 'boot:1' is malformed; expected NAME:LOCATION:KEY_PATH/);
  });

  it('rejects an unknown option', async () => {
    const result = await cli(['avb', 'make_vbmeta_image', '--no_such_option']);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/avb make_vbmeta_image: Unknown option '--no_such_option'/);
  });

  it('expands and rejects option prefixes as argparse does', async () => {
    const folder = await temporaryFolder();
    const output = path.join(folder, 'vbmeta.img');
    expect((await cli(['avb', 'make_vbmeta_image', '--rollback_index_loc=3', '--out', output])).status).toBe(0);
    expect((await readImageVbmeta(output)).vbmeta.header.rollbackIndexLocation).toBe(3);

    const result = await cli(['avb', 'make_vbmeta_image', '--rollback', '3', '--output', output]);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/ambiguous option --rollback could match --rollback_index, --rollback_index_location/);
  });

  it('rejects a signing helper with a clear message', async () => {
    const result = await cli(['avb', 'make_vbmeta_image', '--signing_helper', '/bin/true', '--output', '/tmp/unused.img']);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/--signing_helper and --signing_helper_with_files are not supported; pass the private key with --key/);
  });

  it('parses 0x numbers as avbtool does', async () => {
    const folder = await temporaryFolder();
    const output = path.join(folder, 'vbmeta.img');
    await cli(['avb', 'make_vbmeta_image', '--rollback_index', '0x10', '--flags', '0b10', '--output', output]);

    const { vbmeta } = await readImageVbmeta(output);
    expect(vbmeta.header.rollbackIndex).toBe(16n);
    expect(vbmeta.header.flags).toBe(2);
  });

  it('rejects a negative number', async () => {
    const result = await cli(['avb', 'make_vbmeta_image', '--rollback_index=-1', '--output', '/tmp/unused.img']);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/--rollback_index '-1' is not a non-negative integer/);
  });
});

describe('avb add_hash_footer and info_image', () => {
  it('prints the fields avbtool prints', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 20_000);
    const added = await cli([
      'avb', 'add_hash_footer', '--image', image, '--partition_name', 'boot', '--partition_size', String(1024 * 1024),
      '--algorithm', 'SHA256_RSA4096', '--key', keyPath(4096), '--rollback_index', '9', '--prop', 'com.android.build.boot.os_version:14',
    ]);
    expect(added).toEqual({ status: 0, stdout: '', stderr: '' });

    const { vbmeta, footer } = await readImageVbmeta(image);
    const hash = vbmeta.descriptors[0] as AvbHashDescriptor;
    const keySha1 = createHash('sha1').update(vbmeta.publicKey).digest('hex');
    const info = await cli(['avb', 'info_image', '--image', image]);

    expect(info.status).toBe(0);
    expect(info.stdout).toBe([
      'Footer version:           1.0',
      'Image size:               1048576 bytes',
      'Original image size:      20000 bytes',
      'VBMeta offset:            20480',
      `VBMeta size:              ${footer?.vbmetaSize} bytes`,
      '--',
      'Minimum libavb version:   1.0',
      'Header Block:             256 bytes',
      'Authentication Block:     576 bytes',
      `Auxiliary Block:          ${vbmeta.header.auxiliaryBlockSize} bytes`,
      `Public key (sha1):        ${keySha1}`,
      'Algorithm:                SHA256_RSA4096',
      'Rollback Index:           9',
      'Flags:                    0',
      'Rollback Index Location:  0',
      "Release String:           'avbtool 1.3.0'",
      'Descriptors:',
      '    Hash descriptor:',
      '      Image Size:            20000 bytes',
      '      Hash Algorithm:        sha256',
      '      Partition Name:        boot',
      `      Salt:                  ${Buffer.from(hash.salt).toString('hex')}`,
      `      Digest:                ${Buffer.from(hash.digest).toString('hex')}`,
      '      Flags:                 0',
      "    Prop: com.android.build.boot.os_version -> '14'",
      '',
    ].join('\n'));
  });

  it('prints JSON and writes the public key', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'boot.img', 8192);
    await cli(['avb', 'add_hash_footer', '--image', image, '--partition_name', 'boot', '--dynamic_partition_size', '--algorithm', 'SHA256_RSA2048', '--key', keyPath(2048)]);
    const pubkey = path.join(folder, 'embedded.avbpubkey');

    const info = await cli(['avb', 'info_image', '--image', image, '--json', '--output_pubkey', pubkey]);
    const json = JSON.parse(info.stdout) as Record<string, unknown>;

    expect(json.algorithm).toBe('SHA256_RSA2048');
    expect(json.publicKeySha256).toBe(KNOWN.publicKeyBlobSha256);
    expect((json.footer as { originalImageSize: number }).originalImageSize).toBe(8192);
    expect((json.descriptors as Array<Record<string, unknown>>)[0]).toMatchObject({ kind: 'hash', partitionName: 'boot', imageSize: 8192 });
    expect(sha256(await readFile(pubkey))).toBe(KNOWN.publicKeyBlobSha256);
  });

  it('prints the maximum image size', async () => {
    const result = await cli(['avb', 'add_hash_footer', '--partition_size', '1048576', '--calc_max_image_size']);
    expect(result).toEqual({ status: 0, stdout: `${1_048_576 - 69_632}\n`, stderr: '' });
  });

  it('requires --partition_name', async () => {
    const result = await cli(['avb', 'add_hash_footer', '--image', '/tmp/x.img', '--partition_size', '1048576']);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/avb add_hash_footer: --partition_name is required/);
  });

  it('rejects a salt that is not hex', async () => {
    const result = await cli(['avb', 'add_hash_footer', '--image', '/tmp/x.img', '--partition_name', 'boot', '--partition_size', '1048576', '--salt', 'abc']);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/--salt 'abc' is not hexadecimal with an even number of digits/);
  });
});

describe('avb add_hashtree_footer', () => {
  it('requires --do_not_generate_fec', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'system.img', 8192);
    const result = await cli(['avb', 'add_hashtree_footer', '--image', image, '--partition_name', 'system', '--hash_algorithm', 'sha256']);

    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/FEC generation for partition 'system' is not implemented yet; pass --do_not_generate_fec/);
  });

  it('defaults to sha1 with avbtool\'s warning', async () => {
    const folder = await temporaryFolder();
    const image = await makeImage(folder, 'system.img', 8192);
    const result = await cli(['avb', 'add_hashtree_footer', '--image', image, '--partition_name', 'system', '--do_not_generate_fec', '--json']);

    expect(result.status).toBe(0);
    expect(result.stderr).toMatch(/Defaulting to sha1 for backwards compatibility/);
    expect(JSON.parse(result.stdout).descriptor).toMatchObject({ hashAlgorithm: 'sha1', treeSize: 4096, imageSize: 8192 });
  });

  it('prints the maximum image size', async () => {
    const result = await cli(['avb', 'add_hashtree_footer', '--partition_size', String(64 * 1024 * 1024), '--hash_algorithm', 'sha256', '--calc_max_image_size']);
    expect(result).toEqual({ status: 0, stdout: `${64 * 1024 * 1024 - 129 * 4096 - 69_632}\n`, stderr: '' });
  });
});

describe('avb verify_image', () => {
  async function chainedSetup(): Promise<{ folder: string; vbmeta: string; boot: string; bootKey: string }> {
    const folder = await temporaryFolder();
    const boot = await makeImage(folder, 'boot.img', 12_000);
    const bootKey = path.join(folder, 'boot.avbpubkey');
    await cli(['avb', 'extract_public_key', '--key', keyPath(4096), '--output', bootKey]);
    await cli(['avb', 'add_hash_footer', '--image', boot, '--partition_name', 'boot', '--partition_size', '262144', '--algorithm', 'SHA256_RSA4096', '--key', keyPath(4096), '--rollback_index', '3']);

    const vbmeta = path.join(folder, 'vbmeta.img');
    const made = await cli(['avb', 'make_vbmeta_image', '--algorithm', 'SHA256_RSA2048', '--key', keyPath(2048), '--chain_partition', `boot:1:${bootKey}`, '--output', vbmeta]);
    expect(made.status).toBe(0);
    return { folder, vbmeta, boot, bootKey };
  }

  it('verifies a chain with avbtool\'s messages', async () => {
    const { vbmeta, boot, bootKey } = await chainedSetup();
    const result = await cli(['avb', 'verify_image', '--image', vbmeta, '--key', keyPath(2048), '--expected_chain_partition', `boot:1:${bootKey}`, '--follow_chain_partitions']);

    expect(result.status).toBe(0);
    expect(result.stdout).toBe([
      `Verifying image ${vbmeta} using key at ${keyPath(2048)}`,
      `vbmeta: Successfully verified SHA256_RSA2048 vbmeta struct in ${vbmeta}`,
      'boot: Successfully verified chain partition descriptor matches expected data',
      '--',
      `vbmeta: Successfully verified footer and SHA256_RSA4096 vbmeta struct in ${boot}`,
      `boot: Successfully verified sha256 hash of ${boot} for image of 12000 bytes`,
      '',
    ].join('\n'));
  });

  it('fails on a rollback below the stored index of the chain location', async () => {
    const { vbmeta } = await chainedSetup();
    const result = await cli(['avb', 'verify_image', '--image', vbmeta, '--follow_chain_partitions', '--stored_rollback_index', '1:4']);

    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/rollback index 3 is below the stored value 4 at location 1/);
  });

  it('fails without an expected chain partition', async () => {
    const { vbmeta } = await chainedSetup();
    const result = await cli(['avb', 'verify_image', '--image', vbmeta, '--json']);

    expect(result.status).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, error: { code: 'VERIFY_FAILED', reason: 'chain_partition' } });
  });

  it('fails when the expected chain key differs', async () => {
    const { vbmeta, folder } = await chainedSetup();
    const otherKey = path.join(folder, 'other.avbpubkey');
    await cli(['avb', 'extract_public_key', '--key', keyPath(2048), '--output', otherKey]);
    const result = await cli(['avb', 'verify_image', '--image', vbmeta, '--expected_chain_partition', `boot:1:${otherKey}`]);

    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/chain partition 'boot' pins a different public key than the expected one/);
  });

  it('fails with the wrong key and accepts an avb_custom_key blob', async () => {
    const { vbmeta, bootKey, folder } = await chainedSetup();
    const wrong = await cli(['avb', 'verify_image', '--image', vbmeta, '--key', bootKey, '--follow_chain_partitions']);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/does not match the expected public key/);

    const customKey = path.join(folder, 'avb_custom_key');
    await cli(['avb', 'extract_public_key', '--key', keyPath(2048), '--output', customKey]);
    const right = await cli(['avb', 'verify_image', '--image', vbmeta, '--key', customKey, '--follow_chain_partitions', '--json']);
    expect(right.status).toBe(0);
    const report = JSON.parse(right.stdout);
    expect(report).toMatchObject({ ok: true, algorithm: 'SHA256_RSA2048', publicKeySha256: KNOWN.publicKeyBlobSha256 });
    expect(report.chained[0]).toMatchObject({ algorithm: 'SHA256_RSA4096', rollbackIndex: '3', rollbackIndexLocation: 1 });
  });

  it('verifies included descriptors against the partition images', async () => {
    const folder = await temporaryFolder();
    const boot = await makeImage(folder, 'boot.img', 9000);
    await cli(['avb', 'add_hash_footer', '--image', boot, '--partition_name', 'boot', '--partition_size', '131072']);
    const vbmeta = path.join(folder, 'vbmeta.img');
    await cli(['avb', 'make_vbmeta_image', '--algorithm', 'SHA512_RSA4096', '--key', keyPath(4096), '--include_descriptors_from_image', boot, '--padding_size', '4096', '--output', vbmeta]);

    const ok = await cli(['avb', 'verify_image', '--image', vbmeta]);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/boot: Successfully verified sha256 hash of .*boot\.img for image of 9000 bytes/);

    const data = await readFile(boot);
    data[100] = (data[100] as number) ^ 1;
    await writeFile(boot, data);
    const failed = await cli(['avb', 'verify_image', '--image', vbmeta]);
    expect(failed.status).toBe(1);
    expect(failed.stderr).toMatch(/sha256 digest of .*boot\.img does not match the hash descriptor of 'boot'/);
  });

  it('rejects an unsigned image with --require_signed', async () => {
    const folder = await temporaryFolder();
    const vbmeta = path.join(folder, 'vbmeta.img');
    await cli(['avb', 'make_vbmeta_image', '--output', vbmeta]);

    expect((await cli(['avb', 'verify_image', '--image', vbmeta])).status).toBe(0);
    const result = await cli(['avb', 'verify_image', '--image', vbmeta, '--require_signed']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/vbmeta is not signed \(algorithm NONE\)/);
  });
});
