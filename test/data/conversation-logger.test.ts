import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createConversationLogger } from '../../lib/data/conversation-logger.js';
import { resolveFieldMapping } from '../../lib/data/field-mapping.js';
import { resolveInputs } from '../../lib/data/inputs.js';
import { readInputRecords } from '../../lib/data/record-reader.js';
import { tempDir } from '../helpers/temp-dir.js';

const run = promisify(execFile);
const WRITER = join(import.meta.dirname, '..', 'fixtures', 'data-logger-writer.ts');

describe('createConversationLogger', () => {
  it('concurrent writers with rotation: every line whole, every conversation exactly once, readable by prepare', async () => {
    const dir = tempDir('mlxq-log-');
    const path = join(dir, 'conversations.jsonl');
    const writers = 3;
    const count = 300;
    await Promise.all(
      Array.from({ length: writers }, (_, w) => run(process.execPath, ['--import', 'tsx', WRITER, path, String(w), String(count), '40000'])),
    );
    const files = readdirSync(dir).filter((f) => f.endsWith('.jsonl'));
    expect(files.length).toBeGreaterThan(2); // rotated at least twice
    const seen = new Set<string>();
    for (const f of files) {
      const text = readFileSync(join(dir, f), 'utf8');
      expect(text.endsWith('\n')).toBe(true);
      for (const line of text.split('\n').filter(Boolean)) {
        const obj = JSON.parse(line) as { metadata: { conversation_id: string; quality_score: number } };
        expect(seen.has(obj.metadata.conversation_id)).toBe(false);
        seen.add(obj.metadata.conversation_id);
      }
    }
    expect(seen.size).toBe(writers * count);

    const inputs = await resolveInputs([dir], resolveFieldMapping());
    expect(new Set(inputs.map((i) => i.format))).toEqual(new Set(['iceburg-conversations']));
    let records = 0;
    for (const input of inputs) {
      for await (const o of readInputRecords(input, { mapping: resolveFieldMapping(), reasoning: 'omit' })) {
        expect(o.kind).toBe('record');
        if (o.kind === 'record') expect(o.record.quality).toBe(0.9);
        records++;
      }
    }
    expect(records).toBe(writers * count);
  }, 60_000);

  it('closes off a line torn by an earlier crash, so only that line is bad', () => {
    const dir = tempDir('mlxq-log-');
    const path = join(dir, 'c.jsonl');
    writeFileSync(path, '{"messages": [{"role": "user", "con');
    const logger = createConversationLogger({ path });
    logger.log({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }], qualityScore: null });
    logger.close();
    const lines = readFileSync(path, 'utf8').split('\n');
    expect(lines[0]).toBe('{"messages": [{"role": "user", "con');
    expect(JSON.parse(lines[1]!)).toMatchObject({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }], metadata: { quality_score: null } });
    expect(lines[2]).toBe('');
  });

  it('rejects invalid conversations before writing anything', () => {
    const dir = tempDir('mlxq-log-');
    const path = join(dir, 'c.jsonl');
    const logger = createConversationLogger({ path });
    expect(() => logger.log({ messages: [{ role: 'wizard' as 'user', content: 'x' }] })).toThrow();
    expect(() => logger.log({ messages: [], qualityScore: 2 })).toThrow();
    logger.close();
    expect(readFileSync(path, 'utf8')).toBe('');
  });
});
