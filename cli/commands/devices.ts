import { loadAllProfiles } from '../../pipeline/profiles.js';
import type { DeviceProfile } from '../../pipeline/profiles.js';
import { formatTable, parseCommandArgs, printJson, type Command } from '../command.js';

/** Returns the pinned lockfile input, else the remote repository branch. */
function kernelSource(profile: DeviceProfile): string {
  const source = profile.kernel.source;
  return source.input ?? `${source.remote?.branch ?? 'unknown'} (not pinned)`;
}

function yesNo(value: boolean | undefined): string {
  if (value === undefined) return '-';
  return value ? 'yes' : 'no';
}

export const devicesCommand: Command = {
  name: ['devices'],
  summary: 'list device profiles: arch, kernel source, flash method, KVM',
  help: `Usage: qwamos-build devices [--json]

Prints the compatibility matrix of the device profiles in device-profiles/:
architecture, KVM availability, custom AVB key support, whether the
bootloader can be locked again, flash tool and kernel source, then why KVM
is or is not available on each. A '*' marks a profile with facts not
confirmed from a public source (listed under 'unconfirmed' in its file).

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
        codenames: profile.codenames ?? [],
        soc: profile.soc ?? null,
        kernelSource: profile.kernel.source,
        kernelVersion: profile.kernel.version,
        flashMethod: profile.flash.method,
        kvm: profile.kvm,
        customAvbKey: profile.android?.avb.customKey ?? null,
        relockable: profile.android?.avb.relockable ?? null,
        unconfirmed: profile.unconfirmed ?? [],
      })));
      return 0;
    }

    const rows = profiles.map((profile) => [
      `${profile.id}${(profile.unconfirmed ?? []).length > 0 ? ' *' : ''}`,
      profile.arch,
      yesNo(profile.kvm.available),
      yesNo(profile.android?.avb.customKey),
      yesNo(profile.android?.avb.relockable),
      profile.flash.method,
      `${kernelSource(profile)}, ${profile.kernel.version}`,
    ]);
    process.stdout.write(`${formatTable(['DEVICE', 'ARCH', 'KVM', 'CUSTOM AVB KEY', 'RE-LOCKABLE', 'FLASH', 'KERNEL SOURCE'], rows)}\n\n`);
    for (const profile of profiles) process.stdout.write(`${profile.id}: KVM ${profile.kvm.available ? 'available' : 'unavailable'}: ${profile.kvm.reason}\n`);
    return 0;
  },
};
