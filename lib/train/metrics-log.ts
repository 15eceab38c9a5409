import { mkdir, open, readFile, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { formatKeyPath, problemsFromIssues } from '../config/zod-problems.js';
import { isErrno } from '../io/atomic-file.js';
import { runEventSchema, type RunEvent } from './run-events.js';

export const METRICS_FILE = 'metrics.jsonl';

/**
 * `metrics.jsonl` in a run folder: every run event, one JSON line each, in order. A resumed run
 * appends to the same file. A crash can leave a torn last line (a write cut short); opening the
 * log cuts the file back to its last complete line first, so what follows starts on a line of its
 * own and every line stays parseable.
 *
 * `append` never waits: lines are queued and written in order by one writer, several at a time
 * when the disk is slower than the run. Nothing is fsynced unless a caller asks with `sync()`; the
 * trainer does not, because the log is a record, not state: losing its last lines to a power cut
 * is acceptable, and a resumed run replays (and logs again) the steps after its checkpoint anyway.
 */
export class MetricsLog {
  private queue: string[] = [];
  private writing: Promise<void> | undefined;
  private writeError: unknown;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    /** Bytes of a torn last line removed when the log was opened. */
    readonly repairedBytes: number,
  ) {}

  static async open(runDir: string): Promise<MetricsLog> {
    await mkdir(runDir, { recursive: true });
    const file = path.join(runDir, METRICS_FILE);
    const repairedBytes = await cutTornTail(file);
    const handle = await open(file, 'a');
    return new MetricsLog(file, handle, repairedBytes);
  }

  /** Queues one event; throws at once for an event that does not fit the schema. */
  append(event: RunEvent): void {
    if (this.closed) throw new Error(`${this.path}: append after close`);
    if (this.writeError !== undefined) throw this.writeError;
    const checked = runEventSchema.safeParse(event);
    if (!checked.success) {
      const [problem] = problemsFromIssues(checked.error.issues, event);
      throw new TypeError(`metrics event ${event.type}: ${problem ? `${formatKeyPath(problem.path)}: ${problem.message}` : 'invalid'}`);
    }
    this.queue.push(`${JSON.stringify(checked.data)}\n`);
    this.writing ??= this.drain();
  }

  /** Resolves once every appended line is written; rejects if a write failed. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
    if (this.writeError !== undefined) throw this.writeError;
  }

  /** `flush`, then makes the lines durable. */
  async sync(): Promise<void> {
    await this.flush();
    await this.handle.sync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.flush();
    } finally {
      await this.handle.close();
    }
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const chunk = this.queue.join('');
        this.queue = [];
        await this.handle.appendFile(chunk, 'utf8');
      }
    } catch (error) {
      this.writeError = error;
      this.queue = [];
    } finally {
      this.writing = undefined;
    }
  }
}

const TAIL_CHUNK = 64 * 1024;

/** Truncates a file that does not end in a newline back to just after its last one. */
async function cutTornTail(file: string): Promise<number> {
  const size = await stat(file).then(
    (info) => info.size,
    (error: unknown) => {
      if (isErrno(error, 'ENOENT')) return 0;
      throw error;
    },
  );
  if (size === 0) return 0;
  const handle = await open(file, 'r+');
  try {
    const buffer = Buffer.alloc(Math.min(TAIL_CHUNK, size));
    let end = size;
    let keep = 0;
    let first = true;
    search: while (end > 0) {
      const start = Math.max(0, end - buffer.length);
      const length = end - start;
      await handle.read(buffer, 0, length, start);
      for (let index = length - 1; index >= 0; index--) {
        if (buffer[index] === 0x0a) {
          if (first && index === length - 1) return 0;
          keep = start + index + 1;
          break search;
        }
        first = false;
      }
      end = start;
    }
    await handle.truncate(keep);
    await handle.sync();
    return size - keep;
  } finally {
    await handle.close();
  }
}

/**
 * Reads a metrics log back, validating every line. A torn last line (no newline yet: a crash, or a
 * run still writing) is left out; any other bad line is an error naming the file and line.
 */
export async function readMetricsLog(file: string): Promise<RunEvent[]> {
  const text = await readFile(file, 'utf8');
  const lines = text.split('\n');
  // The piece after the last newline is empty or torn.
  lines.pop();
  return lines.map((line, index) => {
    const where = `${file}:${index + 1}`;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (error) {
      throw new Error(`${where}: not valid JSON (${(error as Error).message})`);
    }
    const result = runEventSchema.safeParse(json);
    if (!result.success) {
      const [problem] = problemsFromIssues(result.error.issues, json);
      throw new Error(`${where}: ${problem ? `${formatKeyPath(problem.path)}: ${problem.message}` : 'not a run event'}`);
    }
    return result.data;
  });
}
