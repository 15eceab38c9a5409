/**
 * An HTTP proxy in front of Ollama that runs a rollout: chat and generate requests for the
 * plan's model are routed by key to the control or the candidate model (only the `model` field
 * changes), responses stream back unchanged, and each answered request is recorded as an
 * outcome. Everything else passes through. ICEBURG points OLLAMA_HOST at it; no code changes.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { createRouter, type Route, type Router } from './router.js';
import type { RolloutPlan } from './plan.js';
import { ResponseTap } from './response-tap.js';

export interface RolloutProxyOptions {
  readonly plan: RolloutPlan;
  /** Ollama's address as OLLAMA_HOST takes it: `host:port` or `http://host:port`. */
  readonly upstream: string;
  readonly port?: number;
  /** Listen address; loopback unless asked otherwise. */
  readonly host?: string;
}

export interface RolloutProxy {
  readonly url: string;
  readonly router: Router;
  close(): Promise<void>;
}

const ROUTED_PATHS = new Set(['/api/chat', '/api/generate']);
const MAX_BODY_BYTES = 256 * 1024 * 1024;
const feedbackSchema = z.object({ key: z.string().min(1), score: z.number().min(0).max(1) });

/** OLLAMA_HOST's forms (`host`, `host:port`, `http://host:port`) as a URL; Ollama's port by default. */
export function upstreamUrl(host: string): URL {
  const withScheme = /^[a-z]+:\/\//i.test(host) ? host : `http://${host}`;
  const url = new URL(withScheme);
  if (url.port === '' && !/:\d+$/.test(url.host)) url.port = url.protocol === 'https:' ? '443' : '11434';
  return url;
}

function sameModel(requested: unknown, name: string): boolean {
  if (typeof requested !== 'string') return false;
  const bare = (n: string) => (n.endsWith(':latest') ? n.slice(0, -':latest'.length) : n);
  return bare(requested) === bare(name);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new Error(`request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The route of a chat/generate body for the plan's model, with the body to send upstream. */
function routeRequest(plan: RolloutPlan, router: Router, req: IncomingMessage, body: Buffer): { route?: Route; key?: string; body: Buffer } {
  if (req.method !== 'POST' || !ROUTED_PATHS.has(new URL(req.url ?? '/', 'http://x').pathname)) return { body };
  let json: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { body };
    json = parsed as Record<string, unknown>;
  } catch {
    return { body }; // Ollama answers malformed JSON itself.
  }
  if (!sameModel(json.model, plan.model ?? plan.control)) return { body };
  const header = req.headers[plan.key_header.toLowerCase()];
  const key = (Array.isArray(header) ? header[0] : header) ?? (typeof json.user === 'string' ? json.user : undefined);
  if (key === undefined || key.length === 0) return { body };
  const route = router.route(key);
  return { route, key, body: Buffer.from(JSON.stringify({ ...json, model: route.model })) };
}

function forward(upstream: URL, req: IncomingMessage, res: ServerResponse, body: Buffer, onDone: (ok: boolean, tap: ResponseTap) => void, route?: Route): void {
  const headers = { ...req.headers, host: upstream.host, 'content-length': String(body.length), 'accept-encoding': 'identity' };
  const upstreamReq = httpRequest(upstream, { method: req.method, path: req.url, headers }, (upstreamRes) => {
    const tap = new ResponseTap();
    res.writeHead(upstreamRes.statusCode ?? 502, { ...upstreamRes.headers, ...(route ? { 'x-rollout-arm': route.arm } : {}) });
    upstreamRes.on('data', (chunk: Buffer) => {
      tap.push(chunk);
      res.write(chunk);
    });
    upstreamRes.on('end', () => {
      res.end();
      onDone((upstreamRes.statusCode ?? 500) < 400 && !tap.sawError(), tap);
    });
    upstreamRes.on('error', () => res.destroy());
  });
  upstreamReq.on('error', (error: NodeJS.ErrnoException) => {
    if (!res.headersSent) sendJson(res, 502, { error: `rollout proxy: Ollama at ${upstream.host} did not answer (${error.code ?? error.message})` });
    else res.destroy();
    onDone(false, new ResponseTap());
  });
  upstreamReq.end(body);
}

async function handle(plan: RolloutPlan, router: Router, upstream: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  const body = await readBody(req);
  if (path === '/rollout/feedback' && req.method === 'POST') {
    const parsed = feedbackSchema.safeParse(JSON.parse(body.toString('utf8') || '{}'));
    if (!parsed.success) return sendJson(res, 400, { error: `feedback needs {key, score 0..1}: ${parsed.error.issues[0]?.message}` });
    return sendJson(res, 200, await router.record(parsed.data.key, { score: parsed.data.score }));
  }
  if (path === '/rollout/summary' && req.method === 'GET') return sendJson(res, 200, await router.summarize());
  const routed = routeRequest(plan, router, req, body);
  const started = performance.now();
  forward(upstream, req, res, routed.body, (ok, tap) => {
    if (routed.key === undefined) return;
    const tokens = tap.evalCount();
    void router.record(routed.key, { ok, latencyMs: Math.round(performance.now() - started), ...(tokens !== undefined ? { tokens } : {}), ...(ok ? {} : { detail: tap.errorText() ?? 'upstream error' }) });
  }, routed.route);
}

export async function startRolloutProxy(options: RolloutProxyOptions): Promise<RolloutProxy> {
  const { plan } = options;
  const upstream = upstreamUrl(options.upstream);
  const router = createRouter({ control: plan.control, candidate: plan.candidate, share: plan.share, salt: plan.salt, log: plan.log, rules: plan });
  const server: Server = createServer((req, res) => {
    handle(plan, router, upstream, req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 400, { error: `rollout proxy: ${error instanceof Error ? error.message : String(error)}` });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${address.address}:${address.port}`,
    router,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
