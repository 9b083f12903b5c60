/** Builds the qemu-system argv for booting a build output folder. */
import path from 'node:path';
import type { Accelerator } from './accelerator.js';
import type { BootConfig } from './boot-config.js';

export interface ExtraDisk {
  file: string;
  device: string;
  readOnly: boolean;
}

export function qemuArgs(dir: string, config: BootConfig, accelerator: Accelerator, extraDisks: ExtraDisk[] = []): string[] {
  const args = [
    '-M', config.qemu.machine,
    // Under KVM the guest CPU must be the host's; 'max' is a TCG model.
    '-cpu', accelerator === 'kvm' ? 'host' : config.qemu.cpu,
    '-accel', accelerator,
    '-m', String(config.qemu.memoryMiB),
    '-smp', '1',
    // The board's UART on stdio is the only console; no monitor, no display.
    '-display', 'none',
    '-monitor', 'none',
    '-serial', 'stdio',
    // A reboot or panic ends QEMU instead of looping.
    '-no-reboot',
    '-kernel', path.join(dir, config.kernel),
    '-initrd', path.join(dir, config.initramfs),
    '-append', config.cmdline,
  ];

  const disks = [...config.disks.map((disk) => ({ ...disk, file: path.join(dir, disk.file) })), ...extraDisks];
  disks.forEach((disk, index) => {
    args.push('-drive', `if=none,format=raw,id=disk${index},file=${disk.file}${disk.readOnly ? ',readonly=on' : ''}`);
  });

  // On the virt board the guest numbers virtio-mmio disks in the reverse
  // of their -device order, so the devices are added last to first to make
  // the first disk /dev/vda.
  for (let index = disks.length - 1; index >= 0; index--) {
    args.push('-device', `${disks[index]!.device},drive=disk${index}`);
  }
  return args;
}
