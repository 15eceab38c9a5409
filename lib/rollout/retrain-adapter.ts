/**
 * `--init-adapter <version|folder>`: a folder is taken as it is; anything else is a version name
 * looked up in the registry, whose record says where that version's adapter lives.
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { loadTrainConfig } from '../config/load-config.js';
import type { TrainConfig } from '../config/train-config.js';
import { openRegistry } from './registry.js';

/** The adapter folder of a version name or a folder path. */
export async function resolveInitAdapter(spec: string, registryRoot: string): Promise<string> {
  if (existsSync(spec)) return resolve(spec);
  const registry = openRegistry(registryRoot);
  const version = await registry.get(spec).catch((error: Error) => {
    throw new Error(`--init-adapter ${spec}: not a folder, and not a version in ${registry.file} (${error.message})`);
  });
  if (!version.adapter) throw new Error(`--init-adapter ${spec}: version ${spec} in ${registry.file} records no adapter folder`);
  const dir = isAbsolute(version.adapter) ? version.adapter : resolve(registryRoot, version.adapter);
  if (!existsSync(dir)) throw new Error(`--init-adapter ${spec}: version ${spec}'s adapter ${dir} does not exist`);
  return dir;
}

/**
 * What `mlx-qlora train` runs: the config file as it is, or, when --init-adapter or the file's
 * lora.init_adapter names an adapter, the config starting from that adapter's folder (a path in
 * the file is relative to the file; a version name resolves through the registry).
 */
export async function trainConfigForCli(configFile: string, flag: string | undefined, registryRoot: string): Promise<TrainConfig | string> {
  const config = await loadTrainConfig(configFile);
  const key = config.lora.init_adapter;
  if (flag === undefined && key === undefined) return configFile;
  let dir: string;
  if (flag !== undefined) dir = await resolveInitAdapter(flag, registryRoot);
  else {
    const besideConfig = resolve(dirname(resolve(configFile)), key!);
    dir = existsSync(besideConfig) ? besideConfig : await resolveInitAdapter(key!, registryRoot);
  }
  return { ...config, lora: { ...config.lora, init_adapter: dir } };
}
