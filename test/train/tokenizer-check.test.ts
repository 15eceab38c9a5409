/**
 * A prepared folder made with another model's tokenizer is refused before training, with a
 * message naming both tokenizers; a token id outside the vocabulary never leaves the data layer.
 */
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readManifest } from '../../lib/data/manifest.js';
import { prepareDataset } from '../../lib/data/prepare.js';
import { openPreparedDataset } from '../../lib/data/prepared-dataset.js';
import { loadModelTokenizer } from '../../lib/tokenizer/load-tokenizer.js';
import { TrainingError } from '../../lib/train/training-error.js';
import { train } from '../../lib/train/trainer.js';
import { makeTrainFixture, shortRunConfig, type TrainFixture } from '../fixtures/train-fixture.js';

let fx: TrainFixture;

describe('the prepared data must come from the model\'s tokenizer', () => {
  beforeAll(async () => {
    fx = await makeTrainFixture();
  }, 120_000);
  afterAll(async () => fx?.cleanup());

  it('refuses a folder prepared with another tokenizer, naming both', async () => {
    // The tiny model's own GGUF vocabulary: same size, other pieces.
    const other = await loadModelTokenizer(fx.tiny.ggufPath, { template: 'chatml' });
    const foreign = join(fx.tiny.root, 'prepared-foreign');
    await prepareDataset({ model: fx.tiny.ggufPath, template: 'chatml', inputs: [fx.jsonl], outDir: foreign, maxSeqLength: 64, split: { valid: 0.2, test: 0 }, nearDuplicateThreshold: null });
    const ours = (await loadModelTokenizer(fx.modelDir)).tokenizer;
    expect(other.tokenizer.fingerprint).not.toBe(ours.fingerprint);

    const config = { ...shortRunConfig(fx, join(fx.tiny.root, 'foreign-run')), data: { train: foreign, max_seq_length: 64 } };
    const error = await train(config).done.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TrainingError);
    expect((error as TrainingError).code).toBe('tokenizer_mismatch');
    expect((error as Error).message).toBe(
      `${foreign} was prepared with the tokenizer of ${fx.tiny.ggufPath} (sha256 ${other.tokenizer.fingerprint.slice(0, 12)}, ${other.tokenizer.vocabSize} ids), ` +
        `but the model ${fx.modelDir} has another tokenizer (sha256 ${ours.fingerprint.slice(0, 12)}, ${ours.vocabSize} ids): ` +
        `its token ids would name other tokens. Prepare the data again with --model ${fx.modelDir}`,
    );
    // The run's own folder prepared with the model itself passes the same check.
    expect(readManifest(fx.prepared).tokenizer.sha256).toBe(ours.fingerprint);
  }, 120_000);

  it('a token id outside the vocabulary is an error naming the shard and record, not a batch', async () => {
    const copy = join(fx.tiny.root, 'prepared-corrupt');
    await prepareDataset({ model: fx.modelDir, inputs: [fx.jsonl], outDir: copy, maxSeqLength: 64, split: { valid: 0, test: 0 }, nearDuplicateThreshold: null });
    const manifest = readManifest(copy);
    const shard = manifest.splits.train.shards[0]!;
    const lengths = new Uint32Array((await readFile(join(copy, shard.lengths))).buffer.slice(0));
    // Record 3's position 2 gets the first id past the vocabulary.
    const at = lengths[0]! + lengths[1]! + lengths[2]! + 2;
    const fh = await open(join(copy, shard.tokens), 'r+');
    const bad = Buffer.alloc(4);
    bad.writeInt32LE(manifest.tokenizer.vocabSize);
    await fh.write(bad, 0, 4, at * 4);
    await fh.close();

    const ds = openPreparedDataset(copy);
    try {
      const split = ds.split('train');
      expect(Array.from(split.read(2).tokens).every((id) => id < manifest.tokenizer.vocabSize)).toBe(true);
      expect(() => split.read(3)).toThrow(
        `${join(copy, shard.tokens)}: record 3 of this shard (record 3 of the train split) has token id ${manifest.tokenizer.vocabSize} at position 2, outside the tokenizer's ${manifest.tokenizer.vocabSize} ids`,
      );
    } finally {
      ds.close();
    }
    // A negative id is as wrong.
    const fh2 = await open(join(copy, shard.tokens), 'r+');
    bad.writeInt32LE(-1);
    await fh2.write(bad, 0, 4, 0);
    await fh2.close();
    const again = openPreparedDataset(copy);
    try {
      expect(() => again.split('train').read(0)).toThrow(/record 0 of this shard \(record 0 of the train split\) has token id -1 at position 0/);
    } finally {
      again.close();
    }
  });
});
