import { appendFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { MetricsLog, readMetricsLog } from '../../lib/train/metrics-log.js';
import type { RunEvent } from '../../lib/train/run-events.js';
import { tempDirs } from './fixtures/temp-dirs.js';

const makeTempDir = tempDirs('mlxq-metrics-');

const time = '2026-01-02T03:04:05.000Z';
const checkpointEvent = (step: number): RunEvent => ({ type: 'checkpoint', time, step, path: `/r/checkpoints/step-${step}`, reason: 'interval' });
const errorEvent = (step: number): RunEvent => ({ type: 'error', time, step, message: 'out of memory', code: 'out_of_memory' });
const line = (event: RunEvent) => `${JSON.stringify(event)}\n`;

let runDir: string;
let file: string;
beforeEach(async () => {
  runDir = path.join(await makeTempDir(), 'run');
  file = path.join(runDir, 'metrics.jsonl');
});

describe('MetricsLog', () => {
  it('writes one JSON line per event, in order, and appends when resumed', async () => {
    const log = await MetricsLog.open(runDir);
    expect(log.path).toBe(file);
    expect(log.repairedBytes).toBe(0);
    log.append(checkpointEvent(1));
    log.append(errorEvent(2));
    await log.close();
    const resumed = await MetricsLog.open(runDir);
    resumed.append(checkpointEvent(3));
    await resumed.close();
    expect(await readFile(file, 'utf8')).toBe(line(checkpointEvent(1)) + line(errorEvent(2)) + line(checkpointEvent(3)));
    expect((await readMetricsLog(file)).map((event) => event.step)).toEqual([1, 2, 3]);
  });

  it('keeps the order of many appends made without waiting', async () => {
    const log = await MetricsLog.open(runDir);
    for (let step = 0; step < 2000; step++) log.append(checkpointEvent(step));
    await log.sync();
    expect((await readMetricsLog(file)).map((event) => event.step)).toEqual(Array.from({ length: 2000 }, (_, step) => step));
    await log.close();
  });

  it('cuts a torn last line before appending', async () => {
    const good = line(checkpointEvent(1)) + line(checkpointEvent(2));
    const torn = '{"type":"step","time":"2026-01-02T0';
    await (await MetricsLog.open(runDir)).close();
    await writeFile(file, good + torn);
    const log = await MetricsLog.open(runDir);
    expect(log.repairedBytes).toBe(torn.length);
    log.append(checkpointEvent(3));
    await log.close();
    expect(await readFile(file, 'utf8')).toBe(good + line(checkpointEvent(3)));
  });

  it('cuts a torn line longer than one read chunk, and a file with no complete line', async () => {
    const good = line(checkpointEvent(1));
    await (await MetricsLog.open(runDir)).close();
    await writeFile(file, good + 'x'.repeat(200_000));
    expect((await MetricsLog.open(runDir).then(async (log) => (await log.close(), log))).repairedBytes).toBe(200_000);
    expect(await readFile(file, 'utf8')).toBe(good);

    await writeFile(file, '\0\0\0\0');
    const log = await MetricsLog.open(runDir);
    expect(log.repairedBytes).toBe(4);
    await log.close();
    expect(await readFile(file, 'utf8')).toBe('');
  });

  it('rejects an event that does not fit the schema, naming the field', async () => {
    const log = await MetricsLog.open(runDir);
    expect(() => log.append({ ...checkpointEvent(1), reason: 'whim' } as unknown as RunEvent)).toThrow(
      'metrics event checkpoint: reason: expected one of interval | best | abort | final, got "whim"',
    );
    expect(() => log.append({ ...errorEvent(1), step: -1 })).toThrow('metrics event error: step: must be >= 0, got -1');
    await log.close();
    expect(await readFile(file, 'utf8')).toBe('');
    expect(() => log.append(checkpointEvent(1))).toThrow('append after close');
  });
});

describe('readMetricsLog', () => {
  it('skips a torn last line but names a bad line elsewhere', async () => {
    const log = await MetricsLog.open(runDir);
    log.append(checkpointEvent(1));
    await log.close();
    await appendFile(file, '{"type": "chec');
    expect(await readMetricsLog(file)).toEqual([checkpointEvent(1)]);

    await writeFile(file, `${line(checkpointEvent(1))}{"type":"eval","step":1}\n${line(checkpointEvent(2))}`);
    await expect(readMetricsLog(file)).rejects.toThrow(`${file}:2: time: required, but missing`);
    await writeFile(file, `nonsense\n`);
    await expect(readMetricsLog(file)).rejects.toThrow(new RegExp(`^${file.replace(/[.]/g, '\\.')}:1: not valid JSON`));
  });
});
