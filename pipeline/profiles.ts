/** Device profiles: YAML files in device-profiles/, one per device. */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { REPO_ROOT, loadYamlFile } from '../core/schema.js';

export interface PartitionSpec {
  /** Partition size in bytes. */
  size: number;
  /** Build output file flashed to it. */
  image?: string;
  /** Dynamic partition inside super, flashed from fastbootd. */
  logical?: boolean;
  /** Samsung PIT partition name, for heimdall. */
  pitName?: string;
  /** Has _a and _b copies on an A/B device; default true there. */
  slotted?: boolean;
}

export type AvbAlgorithmName = 'SHA256_RSA2048' | 'SHA256_RSA4096' | 'SHA256_RSA8192' | 'SHA512_RSA2048' | 'SHA512_RSA4096' | 'SHA512_RSA8192';

export interface AndroidSpec {
  bootHeaderVersion: 0 | 1 | 2 | 3 | 4;
  vendorBootHeaderVersion?: 3 | 4;
  pageSize: 2048 | 4096 | 8192 | 16384;
  /** The generic ramdisk goes to init_boot. */
  initBoot?: boolean;
  ab: boolean;
  partitions: Record<string, PartitionSpec>;
  avb: {
    algorithm: AvbAlgorithmName;
    customKey: boolean;
    relockable: boolean;
    hashPartitions?: string[];
    hashtreePartitions?: string[];
    chainedPartitions?: { partition: string; rollbackIndexLocation: number }[];
  };
}

export interface DeviceProfile {
  id: string;
  name: string;
  /** Product names the bootloader reports; flashing rejects any other. */
  codenames?: string[];
  soc?: string;
  /** JSON pointers to facts not confirmed from a public source. */
  unconfirmed?: string[];
  notes?: string[];
  android?: AndroidSpec;
  arch: 'arm64' | 'x86_64';
  kvm: { available: boolean; reason: string };
  flash: { method: 'qemu' | 'fastboot' | 'heimdall' };
  kernel: {
    source: {
      /** Lockfile input holding the source, when it can be fetched. */
      input?: string;
      /** Location of the device's kernel source when it is not pinned in the lockfile. */
      remote?: { repository: string; branch: string; deviceRepositories?: string[]; defconfig?: string; fragments?: string[] };
    };
    version: string;
    baseConfig: string;
    fragments: string[];
    profileFragment?: string;
    crossCompile: string;
    imageTarget: 'Image' | 'Image.gz' | 'bzImage';
  };
  qemu?: {
    binary: string;
    machine: string;
    cpu: string;
    memoryMiB: number;
    console: string;
    disk: { device: string; guestPath: string };
  };
}

export const PROFILES_DIR = path.join(REPO_ROOT, 'device-profiles');

export async function listProfileIds(profilesDir = PROFILES_DIR): Promise<string[]> {
  const names = await readdir(profilesDir);
  return names.filter((name) => name.endsWith('.yaml')).map((name) => name.slice(0, -'.yaml'.length)).sort();
}

/** Loads and validates device-profiles/ID.yaml. */
export async function loadProfile(id: string, profilesDir = PROFILES_DIR): Promise<DeviceProfile> {
  const file = path.join(profilesDir, `${id}.yaml`);
  const known = await listProfileIds(profilesDir);
  if (!known.includes(id)) {
    throw new QwamosError('INPUT_NOT_FOUND', `unknown device '${id}': no ${file}; known devices: ${known.join(', ')}`);
  }

  const profile = await loadYamlFile<DeviceProfile>(file, 'device-profile');
  if (profile.id !== id) {
    throw new QwamosError('INPUT_INVALID', `${file} is invalid: at /id: must equal the file name '${id}', found '${profile.id}'`);
  }
  return profile;
}

export async function loadAllProfiles(profilesDir = PROFILES_DIR): Promise<DeviceProfile[]> {
  return Promise.all((await listProfileIds(profilesDir)).map((id) => loadProfile(id, profilesDir)));
}
