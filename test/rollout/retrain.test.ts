/**
 * mlx-qlora retrain: the monthly job on the demo's tiny GGUF. Version 1 is trained on month 1;
 * month 2's cumulative export adds 12 conversations. The job is killed (SIGKILL) inside each of
 * its stages in turn, each rerun resuming where the last died; the last run finishes. Every stage
 * then finished exactly once (the stage log), the registry holds exactly one new version with its
 * parent, eval, export hashes and Ollama name, and the fake Ollama was asked to create it once.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { prepareDataset } from '../../lib/data/prepare.js';
import { demoConversations, demoEvalSet } from '../../lib/demo/demo-data.js';
import { writeDemoModel } from '../../lib/demo/demo-model.js';
import { loadPipelineConfig } from '../../lib/rollout/pipeline-config.js';
import { openRegistry } from '../../lib/rollout/registry.js';
import { runRetrain } from '../../lib/rollout/retrain.js';
import { RETRAIN_STAGES, STAGE_LOG_FILE, STATE_FILE } from '../../lib/rollout/retrain-state.js';
import { train } from '../../lib/train/trainer.js';
import { FakeOllama } from '../fixtures/fake-ollama.js';
import { tempDir } from '../helpers/temp-dir.js';

const run = promisify(execFile);
const CHILD = join(import.meta.dirname, 'retrain-child.ts');
const CLI = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'main.ts');
const LORA = { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'] as const };
const TRAIN = {
  lora: { ...LORA, targets: [...LORA.targets] },
  quantization: { bits: 4 as const, group_size: 32 as const },
  training: { learning_rate: 1e-2, batch_size: 4, grad_accumulation: 1, max_steps: 4, warmup_steps: 0, seed: 1, grad_checkpointing: false },
  eval: { every_steps: 0, early_stopping_patience: 0 },
  checkpoint: { every_steps: 1, keep_last: 1 },
};

let root: string;
let base: string;
let fake: FakeOllama;

/** Demo conversations made unique by number, so each month adds records new by content. */
function month(count: number): string {
  const file = join(root, `export-${count}.jsonl`);
  const lines = demoConversations(count).map((c, i) => JSON.stringify({ ...c, messages: c.messages.map((m) => ({ ...m, content: `${m.content} [case ${i}]` })) }));
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

/** Version 1 of a registry: month 1 prepared and trained in the layout retrain and demo write. */
async function firstVersion(registryRoot: string): Promise<void> {
  const work = join(registryRoot, 'v1');
  await prepareDataset({ model: base, inputs: [month(40)], outDir: join(work, 'prepared'), maxSeqLength: 128, split: { valid: 0.1, test: 0 } });
  const done = await train({ ...TRAIN, model: base, data: { train: join(work, 'prepared'), max_seq_length: 128 }, output: join(work, 'run') }).done;
  const registry = openRegistry(registryRoot);
  await registry.add({ name: 'iceburg-demo-v1', parent: null, created: new Date().toISOString(), base_model: base, adapter: done.adapter_path! });
  await registry.promote('iceburg-demo-v1');
}

function writePipeline(name: string, registryRoot: string, gate: object): string {
  const evalFile = join(root, 'eval.jsonl');
  writeFileSync(evalFile, demoEvalSet().map((e) => JSON.stringify(e)).join('\n') + '\n');
  const file = join(root, `${name}.yaml`);
  writeFileSync(
    file,
    stringify({
      name: 'iceburg-demo',
      registry: registryRoot,
      work: join(root, `work-${name}`),
      data: { inputs: [month(52)], replay: 0.1, max_seq_length: 128, valid_fraction: 0.1 },
      train: TRAIN,
      eval: { data: evalFile, max_tokens: 8 },
      export: { gguf: ['adapter'], ollama: 'q8_0', ollama_host: fake.host },
      gate,
    }),
  );
  return file;
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

beforeAll(async () => {
  root = tempDir('retrain-');
  base = (await writeDemoModel(join(root, 'base.gguf'))).path;
  fake = await FakeOllama.start();
}, 120_000);
afterAll(() => fake?.close());

describe('mlx-qlora retrain', () => {
  it('killed in each stage and rerun: every stage finishes once, one new version', async () => {
    const registryRoot = join(root, 'registry');
    await firstVersion(registryRoot);
    const pipeline = writePipeline('kill', registryRoot, { max_loss_increase: 100, min_exact_match_delta: -1 });
    for (const stage of RETRAIN_STAGES) {
      const killed = await run(process.execPath, ['--import', 'tsx', CHILD, pipeline, stage]).then(
        () => undefined,
        (error: { signal?: string; stderr?: string }) => error,
      );
      expect(killed?.signal, `killed in ${stage}: ${killed?.stderr ?? 'it finished instead'}`).toBe('SIGKILL');
    }
    // The last run is the command a user types.
    const { stdout } = await run(process.execPath, ['--import', 'tsx', CLI, 'retrain', '--config', pipeline]);
    expect(stdout).toMatch(/^record: started$/m);
    expect(stdout).toMatch(/^export: finished before, skipped$/m);
    expect(stdout).toMatch(/version iceburg-demo-v2 \(parent iceburg-demo-v1, candidate\)/);
    expect(stdout).toMatch(/^Ollama: iceburg-demo-v2$/m);

    const work = join(root, 'work-kill');
    const log = readFileSync(join(work, STAGE_LOG_FILE), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { stage: string; event: string });
    for (const stage of RETRAIN_STAGES) {
      expect(log.filter((e) => e.stage === stage && e.event === 'finish').length, stage).toBe(1);
      // Started once when it was killed, once when it finished.
      expect(log.filter((e) => e.stage === stage && e.event === 'start').length, stage).toBe(2);
    }
    const state = JSON.parse(readFileSync(join(work, STATE_FILE), 'utf8')) as { stages: Record<string, { outputs: Record<string, unknown> }> };
    expect(Object.keys(state.stages).sort()).toEqual([...RETRAIN_STAGES].sort());
    // Training resumed from its checkpoint: it still ran its 4 steps in all.
    expect(state.stages.train!.outputs.steps).toBe(4);
    // Only month 2's 12 new conversations plus the replayed share of month 1's 40.
    const selection = JSON.parse(readFileSync(join(work, 'prepared', 'selection.json'), 'utf8')) as { new: number; notNew: number; replayed: number };
    expect(selection.new).toBe(12);
    expect(selection.notNew + selection.replayed).toBe(40);

    const versions = await openRegistry(registryRoot).list();
    expect(versions.map((v) => v.name)).toEqual(['iceburg-demo-v1', 'iceburg-demo-v2']);
    const v2 = versions[1]!;
    expect(v2).toMatchObject({ parent: 'iceburg-demo-v1', status: 'candidate', ollama: 'iceburg-demo-v2', base_model: base });
    expect(v2.exports).toHaveLength(1);
    expect(v2.exports[0]!.sha256).toBe(sha256(v2.exports[0]!.path));
    expect(v2.data_manifest_hash).toBe(sha256(join(work, 'prepared', 'manifest.json')));
    expect((v2.eval as { gate: { passed: boolean } }).gate.passed).toBe(true);
    expect([...fake.models.keys()]).toContain('iceburg-demo-v2:latest');
    expect(fake.requestsTo('POST', '/api/create').length).toBe(1);

    // Killed after the registry took the version but before the state file said so: the rerun
    // recognises its own version and records no second one.
    delete state.stages.record;
    writeFileSync(join(work, STATE_FILE), JSON.stringify(state));
    const again = await runRetrain(await loadPipelineConfig(pipeline));
    expect(again.version.name).toBe('iceburg-demo-v2');
    expect((await openRegistry(registryRoot).list()).map((v) => v.name)).toEqual(['iceburg-demo-v1', 'iceburg-demo-v2']);
    expect(fake.requestsTo('POST', '/api/create').length).toBe(1);

    // A finished stage whose output has gone is an error naming it, never a second run of it.
    rmSync(v2.exports[0]!.path);
    await expect(runRetrain(await loadPipelineConfig(pipeline))).rejects.toThrow(/stage export finished at .*-adapter\.gguf is missing; it is not run twice/);
  }, 600_000);

  it('records a candidate that fails the gate without registering it with Ollama', async () => {
    const registryRoot = join(root, 'registry-gate');
    await firstVersion(registryRoot);
    const creates = fake.requestsTo('POST', '/api/create').length;
    const config = await loadPipelineConfig(writePipeline('gate', registryRoot, { max_loss_increase: 0, min_exact_match_delta: 2 }));
    const r = await runRetrain(config);
    expect(r.gate.passed).toBe(false);
    expect(r.gate.reasons.join(' ')).toMatch(/min_exact_match_delta 2/);
    expect(r.ollama).toEqual({ skipped: 'the gate did not pass' });
    expect(r.version).toMatchObject({ name: 'iceburg-demo-v2', parent: 'iceburg-demo-v1', status: 'candidate' });
    expect(r.version.ollama).toBeUndefined();
    expect(fake.requestsTo('POST', '/api/create').length).toBe(creates);
  }, 300_000);

  it('reads the README example pipeline', async () => {
    const file = join(root, 'readme-pipeline.yaml');
    writeFileSync(file, README_PIPELINE);
    const c = await loadPipelineConfig(file);
    expect(c).toMatchObject({ name: 'iceburg-dolphin-mistral', registry: join(root, 'models'), work: join(root, 'retrain', '2026-12') });
    expect(c.data).toMatchObject({ inputs: [join(root, 'exports')], replay: 0.1, where: [] });
    expect(c.export).toEqual({ gguf: ['adapter', 'q4_k_m'], ollama: 'adapter' });
    expect(c.gate).toEqual({ max_loss_increase: 0, min_exact_match_delta: 0 });
  });

  it('names the file, line and key of each config problem', async () => {
    const file = join(root, 'bad.yaml');
    writeFileSync(file, ['name: iceburg-demo', 'registry: r', 'work: w', 'data:', '  inputs: [a.jsonl]', 'train:', '  lora:', '    rnk: 8', 'eval:', '  data: e.jsonl', 'gate:', '  max_loss_increase: high', ''].join('\n'));
    await expect(loadPipelineConfig(file)).rejects.toThrow(/bad\.yaml:8: train\.lora\.rnk: .*[\s\S]*bad\.yaml:12: gate\.max_loss_increase: expected a number/);
  });
});

/** The pipeline.yaml the README shows, read from the README so the two cannot drift apart. */
const README_PIPELINE = [...readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)]
  .map((m) => m[1]!)
  .find((block) => block.includes('registry:') && block.includes('gate:'))!;
