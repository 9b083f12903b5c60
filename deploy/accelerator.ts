/**
 * Chooses QEMU's accelerator. KVM is used only when the guest has the
 * host's architecture, /dev/kvm can be opened, and a probe boot shows
 * console output in time: nested KVM can hang without an error, and then
 * the boot falls back to TCG.
 */
import { access, constants } from 'node:fs/promises';

export type Accelerator = 'kvm' | 'tcg';

export interface AcceleratorChoice {
  accelerator: Accelerator;
  reason: string;
}

const HOST_ARCH: Record<string, string> = { arm64: 'arm64', x64: 'x86_64' };

/** Decides whether KVM may be tried at all; the boot itself is the probe. */
export async function kvmCandidate(guestArch: string, kvmDevice = '/dev/kvm'): Promise<AcceleratorChoice> {
  const hostArch = HOST_ARCH[process.arch] ?? process.arch;
  if (hostArch !== guestArch) {
    return { accelerator: 'tcg', reason: `host is ${hostArch}, guest is ${guestArch}: KVM needs matching architectures` };
  }

  try {
    await access(kvmDevice, constants.R_OK | constants.W_OK);
  } catch {
    return { accelerator: 'tcg', reason: `${kvmDevice} cannot be opened for reading and writing` };
  }
  return { accelerator: 'kvm', reason: `host and guest are ${hostArch} and ${kvmDevice} is usable` };
}
