/** `mlx-qlora models list|show|promote|retire`: the version registry of an output root. */
import type { Command } from 'commander';
import { openRegistry, type ModelVersion } from '../../rollout/registry.js';

interface RootFlags {
  root: string;
  json?: boolean;
}

function row(v: ModelVersion): string {
  const exports = v.exports.map((e) => e.type).join(',') || '–';
  return [v.name.padEnd(32), v.status.padEnd(9), (v.parent ?? '–').padEnd(32), v.created.slice(0, 19).padEnd(19), exports, v.ollama ?? ''].join('  ').trimEnd();
}

function print(value: unknown, json: boolean | undefined, text: () => string): void {
  process.stdout.write(`${json ? JSON.stringify(value, null, 2) : text()}\n`);
}

export function register(program: Command): void {
  const models = program
    .command('models')
    .description('list and manage trained versions (the version registry, versions.json in --root)');
  const withRoot = (cmd: Command) => cmd.option('--root <dir>', 'output root holding versions.json', process.env.MLX_QLORA_ROOT ?? '.').option('--json', 'print JSON');
  withRoot(models.command('list').description('every version, oldest first')).action(async (flags: RootFlags) => {
    const versions = await openRegistry(flags.root).list();
    print(versions, flags.json, () =>
      versions.length === 0 ? `no versions in ${openRegistry(flags.root).file}` : [['name'.padEnd(32), 'status'.padEnd(9), 'parent'.padEnd(32), 'created'.padEnd(19), 'exports', 'ollama'].join('  '), ...versions.map(row)].join('\n'),
    );
  });
  withRoot(models.command('show <name>').description('one version in full')).action(async (name: string, flags: RootFlags) => {
    const version = await openRegistry(flags.root).get(name);
    print(version, true, () => '');
  });
  withRoot(models.command('promote <name>').description('make a version current (the current one becomes previous)')).action(async (name: string, flags: RootFlags) => {
    const version = await openRegistry(flags.root).promote(name);
    print(version, flags.json, () => `${version.name} is now current`);
  });
  withRoot(models.command('retire <name>').description('retire a version that is not current')).action(async (name: string, flags: RootFlags) => {
    const version = await openRegistry(flags.root).retire(name);
    print(version, flags.json, () => `${version.name} is retired`);
  });
}
