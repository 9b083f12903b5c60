import { QwamosError } from '../../core/errors.js';
import { runBootTest, type BootTestResult } from '../../deploy/boot-test.js';
import { parseCommandArgs, printJson, type Command } from '../command.js';

/** Default seconds before a boot without the runtime marker fails. */
export const BOOT_TEST_TIMEOUT_SECONDS = 120;

function parseTimeout(value: string | undefined): number {
  if (value === undefined) return BOOT_TEST_TIMEOUT_SECONDS;
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new QwamosError('USAGE', `boot-test: --timeout must be a positive number of seconds, got '${value}'`);
  }
  return seconds;
}

export function printBootTestResult(result: BootTestResult): void {
  process.stdout.write(`accelerator: ${result.accelerator} (${result.acceleratorReason})\n`);
  for (const hit of result.markers) {
    process.stdout.write(`  ok  ${(hit.atMs / 1000).toFixed(2).padStart(7)} s  ${hit.description}\n`);
  }

  if (result.passed) {
    process.stdout.write(`PASS: booted to the runtime in ${(result.bootTimeMs! / 1000).toFixed(2)} s (console log: ${result.logFile})\n`);
    return;
  }

  process.stdout.write(`FAIL: ${result.failure!.kind}: ${result.failure!.line}\n`);
  process.stdout.write(`last console lines (full log: ${result.logFile}):\n`);
  for (const line of result.lastLines.slice(-15)) process.stdout.write(`  | ${line}\n`);
}

export const bootTestCommand: Command = {
  name: ['boot-test'],
  summary: 'boot a build output folder in QEMU and report pass or fail',
  help: `Usage: qwamos-build boot-test DIR [--timeout SECONDS] [--counters FILE] [--json]

First checks stage 0 on the host as a bootloader would (QEMU has none): the
vbmeta signature, the kernel and initramfs digests and the rollback index.
Then boots the build output folder DIR in QEMU with the device profile's machine,
captures the serial console into DIR/logs/console.log, and passes only when
the console shows, in order: the kernel booted, /dev/kvm present, the system
image mounted through dm-verity, the runtime started. Fails on a timeout, a
kernel panic or a dm-verity error and prints the last console lines. Uses
KVM only when host and guest architectures match and a probe boot works;
otherwise TCG.

Options:
  --timeout SECONDS   fail when the runtime marker has not appeared by then (default ${BOOT_TEST_TIMEOUT_SECONDS})
  --counters FILE     rollback counter store the boot reads and raises, standing in for
                      a phone's RPMB; keep it between boots to test anti-rollback
                      (default: a fresh all-zero store in DIR/logs/counters.img)
  --json              print the result as JSON`,

  async run(argv) {
    const { values, positionals } = parseCommandArgs('boot-test', argv, { timeout: { type: 'string' }, counters: { type: 'string' }, json: { type: 'boolean' } }, true);
    if (positionals.length !== 1) {
      throw new QwamosError('USAGE', "boot-test: expected exactly one build output folder, such as 'out/qemu-virt-arm64'");
    }

    const result = await runBootTest(positionals[0]!, { timeoutSeconds: parseTimeout(values.timeout), ...(values.counters ? { countersFile: values.counters } : {}) });
    if (values.json) printJson({ ok: result.passed, ...result });
    else printBootTestResult(result);
    return result.passed ? 0 : 1;
  },
};
