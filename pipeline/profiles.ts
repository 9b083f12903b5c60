/** Device profiles: YAML files in device-profiles/, one per device. */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';
import { REPO_ROOT, loadYamlFile } from '../core/schema.js';

export interface DeviceProfile {
  id: string;
  name: string;
  arch: 'arm64' | 'x86_64';
  kvm: { available: boolean; reason: string };
  flash: { method: 'qemu' | 'fastboot' | 'heimdall' };
  kernel: {
    source: { input: string };
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
