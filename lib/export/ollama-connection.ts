/**
 * The Ollama server we talk to: its URL (OLLAMA_HOST, with the rules of Ollama's JS client), the
 * client for it, and the translation of transport and HTTP failures into errors that name it.
 */
import { Ollama } from 'ollama';
import { z } from 'zod';
import { OllamaRequestError, OllamaUnavailableError } from './ollama-errors.js';

export const DEFAULT_OLLAMA_HOST = 'http://127.0.0.1:11434';

/**
 * `scheme://host:port` of the server, following ollama-js's formatHost (as Ollama's own CLI reads
 * OLLAMA_HOST): no scheme means http and port 11434; an explicit scheme without a port means its
 * default port; `:port` alone means 127.0.0.1.
 */
export function ollamaHostUrl(host: string | undefined = process.env.OLLAMA_HOST): string {
  let h = (host ?? '').trim();
  if (h === '') return DEFAULT_OLLAMA_HOST;
  let explicitScheme = h.includes('://');
  if (h.startsWith(':')) {
    h = `http://127.0.0.1${h}`;
    explicitScheme = true;
  }
  if (!explicitScheme) h = `http://${h}`;
  let url: URL;
  try {
    url = new URL(h);
  } catch {
    throw new Error(`OLLAMA_HOST "${host}" is not a host, host:port or URL`);
  }
  const port = url.port || (!explicitScheme ? '11434' : url.protocol === 'https:' ? '443' : '80');
  const auth = url.username ? `${url.username}${url.password ? `:${url.password}` : ''}@` : '';
  return `${url.protocol}//${auth}${url.hostname}:${port}${url.pathname}`.replace(/\/+$/, '');
}

export function ollamaClient(host: string): Ollama {
  return new Ollama({ host });
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT']);

/** The system error code under a failed fetch (undici wraps it, sometimes in an AggregateError). */
function connectCode(e: unknown): string | undefined {
  // node:http puts the code on the error itself, fetch (undici) on its cause.
  let cause: unknown = e;
  for (let depth = 0; depth < 4 && cause instanceof Error; depth++) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECT_ERRORS.has(code)) return code;
    const inner = (cause as { errors?: unknown }).errors;
    if (Array.isArray(inner) && inner[0] instanceof Error) cause = inner[0];
    else cause = cause.cause;
  }
  return undefined;
}

/** ollama-js's ResponseError (not exported by the package): the server's message and HTTP status. */
const responseErrorShape = z.object({ name: z.literal('ResponseError'), error: z.string(), status_code: z.number() });

/** Maps a failure of one request to the server into an error naming the host and endpoint. */
export function ollamaFailure(host: string, endpoint: string, e: unknown): Error {
  if (e instanceof OllamaRequestError || e instanceof OllamaUnavailableError) return e;
  const code = connectCode(e);
  if (code) return new OllamaUnavailableError(host, code);
  const response = responseErrorShape.safeParse(e);
  if (response.success) return new OllamaRequestError(host, endpoint, response.data.status_code, response.data.error);
  return new OllamaRequestError(host, endpoint, undefined, describe(e));
}

/** The message with its cause (undici's "fetch failed" says nothing without it). */
function describe(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = e.cause instanceof Error ? e.cause : undefined;
  const code = (cause as { code?: unknown } | undefined)?.code;
  return cause ? `${e.message}: ${typeof code === 'string' ? `${code} ` : ''}${cause.message}` : e.message;
}

/** Runs one request, failures mapped by ollamaFailure. */
export async function ollamaCall<T>(host: string, endpoint: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw ollamaFailure(host, endpoint, e);
  }
}
