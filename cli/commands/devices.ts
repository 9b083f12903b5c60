import { loadAllProfiles } from '../../pipeline/profiles.js';
import { formatTable, parseCommandArgs, printJson, type Command } from '../command.js';

export const devicesCommand: Command = {
  name: ['devices'],
  summary: 'list device profiles: arch, kernel source, flash method, KVM',
  help: `Usage: qwamos-build devices [--json]

Lists the device profiles in device-profiles/ with their architecture,
kernel source, flash method and whether KVM is available, and why.

Options:
  --json    print the profiles as JSON`,

  async run(argv) {
    const { values } = parseCommandArgs('devices', argv, { json: { type: 'boolean' } });
    const profiles = await loadAllProfiles();

    if (values.json) {
      printJson(profiles.map((profile) => ({
        id: profile.id,
        name: profile.name,
        arch: profile.arch,
        kernelSource: profile.kernel.source.input,
        kernelVersion: profile.kernel.version,
        flashMethod: profile.flash.method,
        kvm: profile.kvm,
      })));
      return 0;
    }

    const rows = profiles.map((profile) => [
      profile.id,
      profile.arch,
      `${profile.kernel.source.input} (${profile.kernel.version})`,
      profile.flash.method,
      profile.kvm.available ? 'yes' : 'no',
      profile.kvm.reason,
    ]);
    process.stdout.write(`${formatTable(['DEVICE', 'ARCH', 'KERNEL SOURCE', 'FLASH', 'KVM', 'KVM REASON'], rows)}\n`);
    return 0;
  },
};
