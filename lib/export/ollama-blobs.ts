/**
 * Blob upload by sha256 (`HEAD`/`POST /api/blobs/sha256:<hex>`). ollama-js 0.6.4 has no blob call,
 * so HEAD is plain fetch: 200 means the server holds the blob (no upload then). The upload is a
 * node:http request fed by a stream pipeline: fetch (undici in Node 20) buffered a whole 512 MB
 * file it was given as a stream (arrayBuffers 512 MB at the peak), a pipeline holds a few chunks.
 * The server checks the digest.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { ollamaFailure } from './ollama-connection.js';
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
  let res: { status: number; body: string };
  try {
    res = await postFile(`${host}/api/blobs/${digest}`, path, total, (completed) => onStatus?.({ status, digest, completed, total }));
  } catch (e) {
    throw ollamaFailure(host, endpoint, e);
  }
  if (res.status === 200 || res.status === 201) return;
  const message = errorMessageOf(res.body) ?? `HTTP ${res.status}`;
  if (res.status === 400 && /digest mismatch/i.test(message)) {
    throw new OllamaDigestMismatchError(host, endpoint, res.status, message, path);
  }
  throw new OllamaRequestError(host, endpoint, res.status, message);
}

/** POSTs the file as the body; reports the running byte count at most every 1% and at the end. */
function postFile(url: string, path: string, size: number, report: (completed: number) => void): Promise<{ status: number; body: string }> {
  const step = Math.max(1, Math.floor(size / 100));
  let completed = 0;
  let reported = 0;
  async function* counted(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      completed += chunk.byteLength;
      if (completed - reported >= step || completed === size) {
        reported = completed;
        report(completed);
      }
      yield chunk;
    }
  }
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) };
    const req = (target.protocol === 'https:' ? httpsRequest : httpRequest)(target, { method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    // A server that answers before reading everything (a blob it already holds) ends the pipeline early; its answer counts.
    pipeline(createReadStream(path), counted, req).catch(reject);
  });
}

function errorMessageOf(body: string): string | undefined {
  try {
    const parsed = z.object({ error: z.string() }).safeParse(JSON.parse(body));
    return parsed.success ? parsed.data.error : body.trim() || undefined;
  } catch {
    return body.trim() || undefined;
  }
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
