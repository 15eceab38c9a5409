/**
 * Streams the lines of a JSONL file (plain or gzip, detected by magic bytes, not by name) without
 * holding more than one line in memory. Handles a UTF-8 BOM, CRLF, blank lines and a missing final
 * newline; a line longer than the limit is skipped without being buffered and reported.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

export const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024;

export type JsonlItem =
  | { kind: 'line'; lineNumber: number; text: string }
  | { kind: 'blank'; lineNumber: number }
  | { kind: 'error'; lineNumber: number; reason: 'invalid-utf8' | 'line-too-long'; message: string };

export interface JsonlReadOptions {
  maxLineBytes?: number;
  /** Called with each raw (possibly compressed) chunk read from disk, for progress and hashing. */
  onRawChunk?: (chunk: Buffer) => void;
  signal?: AbortSignal;
}

const GZIP_MAGIC = [0x1f, 0x8b];
const BOM = [0xef, 0xbb, 0xbf];

export async function isGzipFile(path: string): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await handle.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1];
  } finally {
    await handle.close();
  }
}

async function openStream(path: string, options: JsonlReadOptions): Promise<Readable> {
  const raw = createReadStream(path, { highWaterMark: 1 << 20, signal: options.signal });
  // Observe raw chunks in the pipe (a 'data' listener would switch the stream to flowing mode).
  const onRawChunk = options.onRawChunk;
  const observed = onRawChunk
    ? raw.pipe(
        new Transform({
          transform(chunk: Buffer, _enc, done) {
            onRawChunk(chunk);
            done(null, chunk);
          },
        }),
      )
    : raw;
  if (onRawChunk) raw.on('error', (e) => observed.destroy(e));
  if (!(await isGzipFile(path))) return observed;
  const gunzip = createGunzip({ chunkSize: 1 << 20 });
  observed.on('error', (e: Error) => gunzip.destroy(e));
  return observed.pipe(gunzip);
}

export async function* readJsonlLines(path: string, options: JsonlReadOptions = {}): AsyncGenerator<JsonlItem> {
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const stream = await openStream(path, options);

  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let overflowBytes = 0; // > 0 while skipping the rest of an overlong line
  let lineNumber = 0;

  const finishLine = (tail: Buffer): JsonlItem => {
    lineNumber++;
    if (overflowBytes > 0) {
      const total = overflowBytes + tail.length;
      overflowBytes = 0;
      return {
        kind: 'error',
        lineNumber,
        reason: 'line-too-long',
        message: `line is ${total} bytes, over the ${maxLineBytes}-byte limit`,
      };
    }
    let bytes = pending.length === 0 ? tail : Buffer.concat([...pending, tail], pendingBytes + tail.length);
    pending = [];
    pendingBytes = 0;
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] === 0x0d) end--;
    let start = 0;
    if (lineNumber === 1 && bytes[0] === BOM[0] && bytes[1] === BOM[1] && bytes[2] === BOM[2]) start = 3;
    bytes = bytes.subarray(start, end);
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch {
      return { kind: 'error', lineNumber, reason: 'invalid-utf8', message: `invalid UTF-8 at byte ${firstInvalidUtf8(bytes)}` };
    }
    if (text.trim() === '') return { kind: 'blank', lineNumber };
    return { kind: 'line', lineNumber, text };
  };

  const accumulate = (part: Buffer): void => {
    if (part.length === 0) return;
    if (overflowBytes > 0) {
      overflowBytes += part.length;
    } else if (pendingBytes + part.length > maxLineBytes) {
      overflowBytes = pendingBytes + part.length;
      pending = [];
      pendingBytes = 0;
    } else {
      // Copy: the stream may reuse its chunk buffers.
      pending.push(Buffer.from(part));
      pendingBytes += part.length;
    }
  };

  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let from = 0;
    for (let nl = chunk.indexOf(0x0a, from); nl !== -1; nl = chunk.indexOf(0x0a, from)) {
      const part = chunk.subarray(from, nl);
      if (overflowBytes === 0 && pendingBytes + part.length > maxLineBytes) {
        overflowBytes = pendingBytes + part.length;
        pending = [];
        pendingBytes = 0;
        yield finishLine(Buffer.alloc(0));
      } else {
        yield finishLine(part);
      }
      from = nl + 1;
    }
    accumulate(chunk.subarray(from));
  }
  if (pendingBytes > 0 || overflowBytes > 0) yield finishLine(Buffer.alloc(0));
}

/** Byte offset of the first malformed UTF-8 sequence, for the error message. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    const need = b < 0x80 ? 0 : b >> 5 === 0x6 ? 1 : b >> 4 === 0xe ? 2 : b >> 3 === 0x1e ? 3 : -1;
    if (need < 0) return i;
    for (let k = 1; k <= need; k++) if (i + k >= bytes.length || bytes[i + k]! >> 6 !== 0x2) return i;
    i += need + 1;
  }
  return i;
}
