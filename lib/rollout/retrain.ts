/**
 * The monthly retraining job: prepare the new data (only records new since the current version's
 * data, with some of the old replayed), train from the current version's adapter, evaluate the
 * candidate against the current version on a fixed held-out file, export, register NAME-vN with
 * Ollama when the gate passes, and record the version (a candidate, parent = current).
 * Each stage runs once: a rerun after a crash or Ctrl+C resumes at the stage that did not finish.
 */
import { mkdir } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { acquireFileLock } from '../io/file-lock.js';
import type { RunEvent } from '../train/run-events.js';
import { pipelineConfigHash, type PipelineConfig } from './pipeline-config.js';
import { openRegistry, type ModelVersion, type VersionRegistry } from './registry.js';
import { openStageRunner, readRetrainState, type RetrainStage, type RetrainState } from './retrain-state.js';
import * as stages from './retrain-stages.js';

export interface RetrainOptions {
  /** Stops training after the current step (with a checkpoint); the next run continues it. */
  signal?: AbortSignal;
  onStage?: (stage: RetrainStage, event: 'start' | 'skip' | 'finish') => void;
  onTrainEvent?: (event: RunEvent) => void;
}

export interface RetrainResult {
  version: ModelVersion;
  gate: { passed: boolean; reasons: string[] };
  /** The Ollama name, or why there is none. */
  ollama: { name: string } | { skipped: string };
}

/** NAME-vN after the highest N the registry holds. */
export function nextVersionName(name: string, versions: readonly ModelVersion[]): string {
  const pattern = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-v(\\d+)$`);
  const numbers = versions.map((v) => pattern.exec(v.name)).filter((m) => m !== null).map((m) => Number(m[1]));
  return `${name}-v${Math.max(0, ...numbers) + 1}`;
}

/** The state of this work folder's run, or a new one continuing the registry's current version. */
async function startState(c: PipelineConfig, registry: VersionRegistry): Promise<RetrainState> {
  const configHash = pipelineConfigHash(c);
  const existing = await readRetrainState(c.work);
  if (existing) {
    if (existing.config_hash !== configHash) throw new Error(`${c.work}: this work folder belongs to a run of another pipeline config; use a new work folder`);
    return existing;
  }
  const current = await registry.current();
  if (!current) throw new Error(`${registry.file}: no current version to continue from (mlx-qlora models promote NAME)`);
  return { format: 1, config_hash: configHash, version: nextVersionName(c.name, await registry.list()), parent: current.name, started: new Date().toISOString(), stages: {} };
}

function adapterOf(version: ModelVersion, root: string, file: string): string {
  if (!version.adapter) throw new Error(`${file}: version ${version.name} records no adapter to continue from`);
  return isAbsolute(version.adapter) ? version.adapter : resolve(root, version.adapter);
}

export async function runRetrain(c: PipelineConfig, options: RetrainOptions = {}): Promise<RetrainResult> {
  await mkdir(c.work, { recursive: true });
  const lock = await acquireFileLock(join(c.work, 'retrain.lock'), (detail) => new Error(`${c.work} is in use by another retrain (${detail})`));
  try {
    const registry = openRegistry(c.registry);
    const state = await startState(c, registry);
    const parent = await registry.get(state.parent);
    const base = c.base_model ?? parent.base_model;
    if (!base) throw new Error(`${registry.file}: version ${parent.name} records no base_model; set base_model in the pipeline config`);
    const ctx: stages.StageContext = {
      config: c,
      work: c.work,
      version: state.version,
      parentAdapter: adapterOf(parent, c.registry, registry.file),
      base,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onTrainEvent ? { onTrainEvent: options.onTrainEvent } : {}),
    };
    const runner = await openStageRunner(c.work, state, options.onStage);
    const out = stages.stageOutputSchemas;
    const prepared = out.prepare.parse(await runner.run('prepare', () => stages.prepareStage(ctx), stages.verifyPrepare));
    const trained = out.train.parse(await runner.run('train', () => stages.trainStage(ctx, prepared.prepared), stages.verifyTrain));
    const evaluated = out.eval.parse(await runner.run('eval', () => stages.evalStage(ctx, trained.adapter), stages.verifyEval));
    const exported = out.export.parse(await runner.run('export', () => stages.exportStage(ctx, trained.run), stages.verifyExport));
    const registered = await runner.run('register', () => stages.registerStage(ctx, trained.run, evaluated.gate.passed), async () => undefined);
    const ollama = typeof registered.ollama === 'string' ? registered.ollama : undefined;
    const marker = `retrain ${c.work} ${state.started}`;
    await runner.run(
      'record',
      async () => {
        // A crash after the registry took the version but before the state said so: it is ours.
        const known = (await registry.list()).find((v) => v.name === state.version);
        if (known && known.notes !== marker) throw new Error(`${registry.file}: version ${state.version} already exists, made by another run`);
        if (!known) {
          await registry.add({
            name: state.version,
            parent: parent.name,
            created: new Date().toISOString(),
            status: 'candidate',
            base_model: base,
            adapter: trained.adapter,
            data_manifest_hash: prepared.manifest_sha256,
            config_hash: trained.config_hash,
            eval: { current: evaluated.current, candidate: evaluated.candidate, gate: evaluated.gate, report: evaluated.report },
            exports: exported.exports,
            ...(ollama ? { ollama } : {}),
            notes: marker,
          });
        }
        return { version: state.version };
      },
      async () => void (await registry.get(state.version)),
    );
    return { version: await registry.get(state.version), gate: evaluated.gate, ollama: ollama ? { name: ollama } : { skipped: String(registered.skipped) } };
  } finally {
    await lock.release();
  }
}
