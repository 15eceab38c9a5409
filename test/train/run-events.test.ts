import { describe, expect, it } from 'vitest';
import { EventChannel, createRunEventChannel, runEventSchema, type EvalEvent, type RunEvent } from '../../lib/train/run-events.js';

const time = '2026-01-02T03:04:05.000Z';
const stepEvent = (step: number): RunEvent => ({
  type: 'step',
  time,
  step,
  epoch: 0,
  loss: 2.5,
  lr: 1e-4,
  grad_norm: 0.8,
  tokens: 4096,
  supervised_tokens: 1024,
  tokens_per_sec: 900,
  supervised_tokens_per_sec: 225,
  peak_memory_bytes: 5_000_000_000,
  active_memory_bytes: 4_000_000_000,
  eta_seconds: null,
  step_seconds: 0.5,
  native_seconds: 0.49,
});
const evalEvent = (step: number): RunEvent => ({
  type: 'eval',
  time,
  step,
  val_loss: 1.9,
  val_loss_nonfinite: false,
  perplexity: Math.exp(1.9),
  is_best: true,
  best_val_loss: 1.9,
  best_step: step,
  evals_since_best: 0,
});
const doneEvent = (step: number): RunEvent => ({
  type: 'done',
  time,
  step,
  reason: 'completed',
  best: { step: 2, val_loss: 1.9 },
  adapter_path: '/runs/x/adapter',
  elapsed_seconds: 12.5,
});
const labels = (events: RunEvent[]) => events.map((event) => `${event.type}@${event.step}`);

async function drain<T>(channel: AsyncIterable<T>): Promise<T[]> {
  const received: T[] = [];
  for await (const event of channel) received.push(event);
  return received;
}

describe('run event schema', () => {
  it('accepts each event type and rejects unknown types and non-finite numbers', () => {
    for (const event of [stepEvent(1), evalEvent(2), doneEvent(3)]) expect(runEventSchema.parse(event)).toEqual(event);
    expect(runEventSchema.safeParse({ ...stepEvent(1), type: 'progress' }).success).toBe(false);
    expect(runEventSchema.safeParse({ ...stepEvent(1), loss: Number.NaN }).success).toBe(false);
    expect(runEventSchema.safeParse({ ...stepEvent(1), extra: 1 }).success).toBe(false);
  });

  it('carries a NaN/Inf validation loss as null with a flag, and reads lines written before the flag', () => {
    const nan: RunEvent = { ...(evalEvent(4) as EvalEvent), val_loss: null, val_loss_nonfinite: true, perplexity: null, is_best: false, best_val_loss: null, best_step: null };
    expect(runEventSchema.parse(JSON.parse(JSON.stringify(nan)))).toEqual(nan);
    // JSON.stringify writes NaN as null: without the flag a reader could not tell it from "no loss".
    expect(runEventSchema.safeParse({ ...evalEvent(4), val_loss: Number.NaN }).success).toBe(false);
    const { val_loss_nonfinite: _, ...old } = evalEvent(2) as EvalEvent;
    expect(runEventSchema.parse(old)).toEqual(evalEvent(2));
  });

  it('accepts a skipped update without supervised tokens', () => {
    const skip: RunEvent = { type: 'skip', time, step: 3, reason: 'no_supervised_tokens', tokens: 120 };
    expect(runEventSchema.parse(skip)).toEqual(skip);
    expect(runEventSchema.safeParse({ ...skip, reason: 'bored' }).success).toBe(false);
  });
});

describe('EventChannel', () => {
  it('delivers events pushed before and while the consumer waits, in order, then ends on close', async () => {
    const channel = createRunEventChannel();
    channel.push(stepEvent(1));
    const consumed = drain(channel);
    await Promise.resolve();
    channel.push(stepEvent(2));
    await new Promise((resolve) => setImmediate(resolve));
    channel.push(evalEvent(2));
    channel.push(doneEvent(3));
    channel.close();
    expect(labels(await consumed)).toEqual(['step@1', 'step@2', 'eval@2', 'done@3']);
    expect(channel.dropped).toBe(0);
  });

  it('drops the oldest step events first when the buffer is full', async () => {
    const channel = createRunEventChannel(3);
    channel.push({ type: 'start', time, step: 0, total_steps: 10, resumed_from: null, config_hash: 'h', library_version: '0.1.0' });
    channel.push(stepEvent(1));
    channel.push(stepEvent(2));
    channel.push(stepEvent(3)); // drops step 1
    channel.push(evalEvent(3)); // drops step 2
    channel.push(doneEvent(3)); // drops step 3
    channel.close();
    expect(labels(await drain(channel))).toEqual(['start@0', 'eval@3', 'done@3']);
    expect(channel.dropped).toBe(3);
  });

  it('drops the oldest event of any kind when none is droppable', async () => {
    const channel = createRunEventChannel(2);
    channel.push(evalEvent(1));
    channel.push(evalEvent(2));
    channel.push(doneEvent(3));
    channel.close();
    expect(labels(await drain(channel))).toEqual(['eval@2', 'done@3']);
    expect(channel.dropped).toBe(1);
  });

  it('never blocks the producer and holds at most capacity events for an absent consumer', async () => {
    const channel = createRunEventChannel(100);
    for (let step = 1; step <= 10_000; step++) channel.push(stepEvent(step));
    channel.close();
    const received = await drain(channel);
    expect(received).toHaveLength(100);
    expect(received[0]?.step).toBe(9901);
    expect(received.at(-1)?.step).toBe(10_000);
    expect(channel.dropped).toBe(9900);
  });

  it('hands a failure to the consumer after the buffered events', async () => {
    const channel = new EventChannel<number>();
    channel.push(1);
    channel.push(2);
    channel.fail(new Error('out of memory'));
    const received: number[] = [];
    await expect(
      (async () => {
        for await (const value of channel) received.push(value);
      })(),
    ).rejects.toThrow('out of memory');
    expect(received).toEqual([1, 2]);
  });

  it('fails a consumer that is already waiting', async () => {
    const channel = new EventChannel<number>();
    const consumed = drain(channel);
    await Promise.resolve();
    channel.fail(new Error('boom'));
    await expect(consumed).rejects.toThrow('boom');
  });

  it('detaches a consumer that stops, discarding later events', async () => {
    const channel = new EventChannel<number>({ capacity: 4 });
    channel.push(1);
    channel.push(2);
    for await (const value of channel) {
      expect(value).toBe(1);
      break;
    }
    for (let value = 3; value < 100; value++) channel.push(value);
    expect(channel.dropped).toBe(0);
    channel.close();
  });

  it('allows one consumer and no push after close', () => {
    const channel = new EventChannel<number>();
    channel[Symbol.asyncIterator]();
    expect(() => channel[Symbol.asyncIterator]()).toThrow('only one consumer');
    channel.close();
    expect(() => channel.push(1)).toThrow('push after close');
    expect(() => new EventChannel({ capacity: 0 })).toThrow(RangeError);
  });
});
