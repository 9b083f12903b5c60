/**
 * `qwamos-build verify DIR`: checks a signed build output offline, stage by
 * stage, the way the boot chain will, and prints one row per stage.
 */
import { type Command, formatTable, parseCommandArgs, printJson } from '../command.js';
import { QwamosError } from '../../core/errors.js';
import { verifyBuildOutput, type StageRow, type VerifyBuildResult } from '../../signing/verify-build.js';

/** Hex digits of a key id shown in the table; --json prints the full id. */
const SHORT_KEY_ID = 16;

function rollbackCell(row: StageRow): string {
  if (row.rollbackIndex === undefined) return '-';
  return `${row.rollbackIndex}/${row.rollbackIndexLocation ?? '-'}`;
}

function anchorLines(result: VerifyBuildResult): string[] {
  const { rootKey, avbKey } = result.trustAnchor;
  const rootId = rootKey.keyId ?? 'unreadable';
  const lines = [rootKey.pinned
    ? `trust anchor: root key ${rootId} pinned by --root-key ${rootKey.file}`
    : `trust anchor: root key ${rootId} from the build output's own ${rootKey.file}; pass --root-key FILE to pin the product's key`];

  if (avbKey) {
    const sha256 = avbKey.sha256 ?? 'unreadable';
    lines.push(avbKey.pinned
      ? `AVB key: sha256 ${sha256} pinned by --avb-key ${avbKey.file}`
      : `AVB key: sha256 ${sha256} from the build output's own ${avbKey.file}; pass --avb-key FILE to pin it`);
  }
  lines.push(result.rollback.checked ? `rollback: checked against ${result.rollback.counters}` : 'rollback: not checked (no --counters)');
  return lines;
}

/** Formats the report: trust lines, the stage table, every failure, and a summary line. */
export function formatVerifyReport(result: VerifyBuildResult): string {
  const rows = result.stages.map((row) => [
    row.stage,
    row.status,
    row.signerKeyId?.slice(0, SHORT_KEY_ID) ?? '-',
    rollbackCell(row),
    row.failures[0] ? row.failures[0].kind : '',
  ]);
  const table = formatTable(['STAGE', 'STATUS', 'SIGNER', 'ROLLBACK INDEX/LOCATION', 'REASON'], rows);
  const failed = result.stages.filter((row) => row.status === 'FAIL').length;
  // The rollback line above already covers the skipped rollback checks.
  const skipped = result.stages.flatMap((row) => row.skipped.filter((check) => !check.startsWith('rollback ')).map((check) => `  ${row.stage}: ${check}`));
  const summary = result.ok
    ? `verified: all ${result.stages.length} stages passed`
    : `verification failed: ${failed} of ${result.stages.length} stages failed`;

  return [
    ...anchorLines(result),
    '',
    table,
    ...(skipped.length > 0 ? ['', 'Not checked:', ...skipped] : []),
    ...(result.failures.length > 0 ? ['', 'Failures:', ...result.failures.map((failure) => `  ${failure}`)] : []),
    '',
    summary,
  ].join('\n');
}

export const verifyCommand: Command = {
  name: ['verify'],
  summary: 'check a signed build output offline, stage by stage, as the boot chain does',
  help: `Usage: qwamos-build verify DIR [--counters FILE] [--root-key FILE] [--avb-key FILE] [--json]

Checks the build output folder DIR the way the boot chain will: the vbmeta's
RSA signature and hash descriptors, each stage manifest's ML-DSA-87
signature, the root key's certificates for the stage keys, the signer each
stage allows for the next one, the public key built into the initramfs, the
device profile, the SHA-512 of each image, the dm-verity root and the
dm-mod.create= table in boot.json, and rollback indexes. Prints one row per
stage. Checks that need a file the build does not write (phone builds have
no boot.json, verity.json or stage-key certificates) are listed as not
checked. Reads DIR and the counter store and writes nothing.

Options:
  --counters FILE   rollback counter store; each manifest's rollback index
                    (and the vbmeta's) must be at least the stored counter
                    of its location. Without it rollback is not checked.
  --root-key FILE   root ML-DSA-87 public key (SubjectPublicKeyInfo PEM) to
                    trust; default: DIR's own keys/root.pub, which only
                    shows that the folder is consistent
  --avb-key FILE    AVB public key to trust (avb_pubkey.bin blob or RSA PEM);
                    default: DIR's own key
  --json            print { ok, trustAnchor, rollback, stages, failures }; each
                    stage lists its passed checks, skipped checks and failures

Exit status: 0 every stage passed, 1 a check failed, 2 invalid usage or DIR
is not a signed build output.`,

  async run(argv) {
    const { values, positionals } = parseCommandArgs('verify', argv, {
      counters: { type: 'string' },
      'root-key': { type: 'string' },
      'avb-key': { type: 'string' },
      json: { type: 'boolean', default: false },
    }, true);
    if (positionals.length !== 1) {
      throw new QwamosError('USAGE', `verify: expected one build output folder, got ${positionals.length} arguments; run 'qwamos-build verify --help' for the options`);
    }

    const result = await verifyBuildOutput(positionals[0]!, {
      ...(values.counters === undefined ? {} : { countersPath: values.counters }),
      ...(values['root-key'] === undefined ? {} : { rootKeyPath: values['root-key'] }),
      ...(values['avb-key'] === undefined ? {} : { avbKeyPath: values['avb-key'] }),
    });

    if (values.json) {
      printJson({ ok: result.ok, trustAnchor: result.trustAnchor, rollback: result.rollback, stages: result.stages, failures: result.failures });
    } else {
      process.stdout.write(`${formatVerifyReport(result)}\n`);
    }
    return result.ok ? 0 : 1;
  },
};
