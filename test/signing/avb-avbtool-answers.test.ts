/**
 * Runs the command lines of AOSP avbtool's own tests (external/avb
 * test/avbtool_unittest.cc, tests AddHashFooter, AddHashtreeFooter and
 * AddHashFooterWithNoAB) through `qwamos-build avb` and compares the
 * info_image output with the text avbtool prints there, line for line.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../cli/main.js';
import { keyPath, runProgram, temporaryFolder } from './avb-fixtures.js';

async function cli(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
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
    return { status: await main(args), stdout, stderr };
  } finally {
    vi.restoreAllMocks();
  }
}

afterEach(() => {
  vi.restoreAllMocks();
});

const KEY_SHA1 = 'cdbb77177f731920bbe0a0f94f84d9038ae0617d';

const HASH_VBMETA_INFO = [
  'Minimum libavb version:   1.0',
  'Header Block:             256 bytes',
  'Authentication Block:     320 bytes',
  'Auxiliary Block:          704 bytes',
  `Public key (sha1):        ${KEY_SHA1}`,
  'Algorithm:                SHA256_RSA2048',
  'Rollback Index:           0',
  'Flags:                    0',
  'Rollback Index Location:  0',
  "Release String:           ''",
  'Descriptors:',
  '    Hash descriptor:',
  '      Image Size:            1052672 bytes',
  '      Hash Algorithm:        sha256',
  '      Partition Name:        foobar',
  '      Salt:                  d00df00d',
  '      Digest:                9a58cc996d405e08a1e00f96dbfe9104fedf41cb83b1f5e4ed357fbcf58d88d9',
  '      Flags:                 0',
  '',
].join('\n');

const HASHTREE_VBMETA_INFO = [
  'Minimum libavb version:   1.0',
  'Header Block:             256 bytes',
  'Authentication Block:     320 bytes',
  'Auxiliary Block:          768 bytes',
  `Public key (sha1):        ${KEY_SHA1}`,
  'Algorithm:                SHA256_RSA2048',
  'Rollback Index:           0',
  'Flags:                    0',
  'Rollback Index Location:  0',
  "Release String:           ''",
  'Descriptors:',
  '    Hashtree descriptor:',
  '      Version of dm-verity:  1',
  '      Image Size:            1052672 bytes',
  '      Tree Offset:           1052672',
  '      Tree Size:             16384 bytes',
  '      Data Block Size:       4096 bytes',
  '      Hash Block Size:       4096 bytes',
  '      FEC num roots:         0',
  '      FEC offset:            0',
  '      FEC size:              0 bytes',
  '      Hash Algorithm:        sha1',
  '      Partition Name:        foobar',
  '      Salt:                  d00df00d',
  '      Root Digest:           e811611467dcd6e8dc4324e45f706c2bdd51db67',
  '      Flags:                 0',
  '',
].join('\n');

function footerInfo(vbmetaOffset: number, vbmetaSize: number): string {
  return [
    'Footer version:           1.0',
    'Image size:               1572864 bytes',
    'Original image size:      1052672 bytes',
    `VBMeta offset:            ${vbmetaOffset}`,
    `VBMeta size:              ${vbmetaSize} bytes`,
    '--',
    '',
  ].join('\n');
}

describe('avbtool test answers', () => {
  it('match for add_hash_footer', async () => {
    const folder = await temporaryFolder();
    const rootfs = Buffer.alloc(1028 * 1024);
    for (let n = 0; n < rootfs.length; n++) {
      const patterned = (n >= 5000 && n < 105_000) || (n >= 205_000 && n < 305_000) || (n >= 505_000 && n < 605_000);
      rootfs[n] = patterned ? n & 0x03 : n & 0xff;
    }
    const image = path.join(folder, 'rootfs.bin');
    const external = path.join(folder, 'external_vbmeta.bin');
    await writeFile(image, rootfs);

    for (let run = 0; run < 2; run++) {
      const added = await cli([
        'avb', 'add_hash_footer', '--salt', 'd00df00d', '--hash_algorithm', 'sha256', '--image', image,
        '--partition_size', String(1536 * 1024), '--partition_name', 'foobar', '--algorithm', 'SHA256_RSA2048',
        '--key', keyPath(2048), '--output_vbmeta', external, '--internal_release_string', '',
      ]);
      expect(added).toEqual({ status: 0, stdout: '', stderr: '' });

      expect((await cli(['avb', 'info_image', '--image', image])).stdout).toBe(footerInfo(1_052_672, 1280) + HASH_VBMETA_INFO);
      expect((await cli(['avb', 'info_image', '--image', external])).stdout).toBe(HASH_VBMETA_INFO);
    }
  });

  it('match for add_hashtree_footer and setup_rootfs_from_kernel', async () => {
    const folder = await temporaryFolder();
    const rootfs = Buffer.alloc(1028 * 1024);
    for (let n = 0; n < rootfs.length; n++) rootfs[n] = n & 0xff;
    const image = path.join(folder, 'rootfs.bin');
    const external = path.join(folder, 'external_vbmeta.bin');
    await writeFile(image, rootfs);

    for (let run = 0; run < 2; run++) {
      const added = await cli([
        'avb', 'add_hashtree_footer', '--salt', 'd00df00d', '--image', image, '--hash_algorithm', 'sha1',
        '--partition_size', String(1536 * 1024), '--partition_name', 'foobar', '--algorithm', 'SHA256_RSA2048',
        '--key', keyPath(2048), '--output_vbmeta_image', external, '--internal_release_string', '', '--do_not_generate_fec',
      ]);
      expect(added).toEqual({ status: 0, stdout: '', stderr: '' });

      expect((await cli(['avb', 'info_image', '--image', image])).stdout).toBe(footerInfo(1_069_056, 1344) + HASHTREE_VBMETA_INFO);
      expect((await cli(['avb', 'info_image', '--image', external])).stdout).toBe(HASHTREE_VBMETA_INFO);
    }

    const verity = await runProgram('veritysetup', [
      '--no-superblock', '--format=1', '--hash=sha1', '--data-block-size=4096', '--hash-block-size=4096', '--salt=d00df00d',
      '--data-blocks=257', '--hash-offset=1052672', 'verify', image, image, 'e811611467dcd6e8dc4324e45f706c2bdd51db67',
    ]);
    expect(verity.status).toBe(0);

    const vbmeta = path.join(folder, 'vbmeta_dm_verity_desc.bin');
    const made = await cli(['avb', 'make_vbmeta_image', '--output', vbmeta, '--setup_rootfs_from_kernel', image, '--algorithm', 'SHA256_RSA2048', '--key', keyPath(2048), '--internal_release_string', '']);
    expect(made.status).toBe(0);
    expect((await cli(['avb', 'info_image', '--image', vbmeta])).stdout).toBe([
      'Minimum libavb version:   1.0',
      'Header Block:             256 bytes',
      'Authentication Block:     320 bytes',
      'Auxiliary Block:          896 bytes',
      `Public key (sha1):        ${KEY_SHA1}`,
      'Algorithm:                SHA256_RSA2048',
      'Rollback Index:           0',
      'Flags:                    0',
      'Rollback Index Location:  0',
      "Release String:           ''",
      'Descriptors:',
      '    Kernel Cmdline descriptor:',
      '      Flags:                 1',
      '      Kernel Cmdline:        \'dm="1 vroot none ro 1,0 2056 verity 1 PARTUUID=$(ANDROID_SYSTEM_PARTUUID) PARTUUID=$(ANDROID_SYSTEM_PARTUUID) '
        + '4096 4096 257 257 sha1 e811611467dcd6e8dc4324e45f706c2bdd51db67 d00df00d 2 $(ANDROID_VERITY_MODE) ignore_zero_blocks" root=/dev/dm-0\'',
      '    Kernel Cmdline descriptor:',
      '      Flags:                 2',
      "      Kernel Cmdline:        'root=PARTUUID=$(ANDROID_SYSTEM_PARTUUID)'",
      '',
    ].join('\n'));
  });

  it('match for add_hash_footer --do_not_use_ab', async () => {
    const folder = await temporaryFolder();
    const content = Buffer.alloc(1024);
    for (let n = 0; n < content.length; n++) content[n] = n & 0xff;
    const image = path.join(folder, 'digest_location.img');
    await writeFile(image, content);

    await cli([
      'avb', 'add_hash_footer', '--salt', 'd00df00d', '--hash_algorithm', 'sha256', '--image', image, '--partition_size', String(1024 * 1024),
      '--partition_name', 'foobar', '--algorithm', 'SHA256_RSA2048', '--key', keyPath(2048), '--internal_release_string', '', '--do_not_use_ab',
    ]);
    const info = (await cli(['avb', 'info_image', '--image', image])).stdout;

    expect(info).toMatch(/^Footer version: {11}1\.0\nImage size: {15}1048576 bytes\nOriginal image size: {6}1024 bytes\nVBMeta offset: {12}4096\nVBMeta size: {14}1280 bytes\n--\nMinimum libavb version: {3}1\.1\n/);
    expect(info).toContain('      Digest:                91386fea3e251ad0c2cb6859e4f4772f37fdb69f17d46636ddc9e7fbfd3bf3d0\n      Flags:                 1\n');
  });
});
