/**
 * Blob upload by sha256 (`HEAD`/`POST /api/blobs/sha256:<hex>`). ollama-js 0.6.4 has no blob call,
 * so this is plain fetch: HEAD answers 200 when the server holds the blob (no upload then), else
 * the file is streamed from disk, never read into memory, and the server checks its digest.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { errorBodyOf, ollamaFailure } from './ollama-connection.js';
import { OllamaDigestMismatchError, OllamaRequestError } from './ollama-errors.js';

export interface OllamaStatus {
  status: string;
  digest?: string;
  completed?: number;
  total?: number;
}

/** `sha256:<hex>` of a file, read as a stream. */
export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return `sha256:${hash.digest('hex')}`;
}

/** True when the server already holds the blob. */
export async function hasBlob(host: string, digest: string): Promise<boolean> {
  const endpoint = `HEAD /api/blobs/${digest}`;
  let res: Response;
  try {
    res = await fetch(`${host}/api/blobs/${digest}`, { method: 'HEAD' });
  } catch (e) {
    throw ollamaFailure(host, endpoint, e);
  }
  if (res.status === 200) return true;
  if (res.status === 404) return false;
  throw new OllamaRequestError(host, endpoint, res.status, res.statusText);
}

/** Streams the file to the server under its digest; onStatus sees the bytes sent. */
export async function uploadBlob(
  host: string,
  path: string,
  digest: string,
  onStatus?: (s: OllamaStatus) => void,
): Promise<void> {
  const endpoint = `POST /api/blobs/${digest}`;
  const total = (await stat(path)).size;
  const status = `uploading ${digest}`;
  onStatus?.({ status, digest, completed: 0, total });
  const source = createReadStream(path);
  const counted = source.pipe(byteCounter(total, (completed) => onStatus?.({ status, digest, completed, total })));
  source.on('error', (e) => counted.destroy(e));
  const body = Readable.toWeb(counted);
  let res: Response;
  try {
    // duplex 'half' is what undici requires for a streamed request body.
    const init = { method: 'POST', body, duplex: 'half', headers: { 'Content-Type': 'application/octet-stream' } };
    res = await fetch(`${host}/api/blobs/${digest}`, init as RequestInit);
  } catch (e) {
    throw ollamaFailure(host, endpoint, e);
  }
  if (res.status === 200 || res.status === 201) {
    await res.body?.cancel();
    return;
  }
  const message = await errorBodyOf(res);
  if (res.status === 400 && /digest mismatch/i.test(message)) {
    throw new OllamaDigestMismatchError(host, endpoint, res.status, message, path);
  }
  throw new OllamaRequestError(host, endpoint, res.status, message);
}

/** Passes bytes through, reporting the running count at most every 1% (and at the end). */
function byteCounter(total: number, report: (completed: number) => void): Transform {
  let completed = 0;
  let reported = 0;
  const step = Math.max(1, Math.floor(total / 100));
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      completed += chunk.byteLength;
      if (completed - reported >= step || completed === total) {
        reported = completed;
        report(completed);
      }
      done(null, chunk);
    },
  });
}

/** Makes sure the server holds the file's blob; returns its digest and whether it was uploaded. */
export async function pushBlob(
  host: string,
  path: string,
  onStatus?: (s: OllamaStatus) => void,
): Promise<{ digest: string; uploaded: boolean }> {
  onStatus?.({ status: `hashing ${path}` });
  const digest = await sha256OfFile(path);
  if (await hasBlob(host, digest)) {
    onStatus?.({ status: `using existing blob ${digest}`, digest });
    return { digest, uploaded: false };
  }
  await uploadBlob(host, path, digest, onStatus);
  return { digest, uploaded: true };
}
