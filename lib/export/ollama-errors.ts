/** Errors of the Ollama registration, each naming the server it talked to. */

/** Nothing answers at the host (connection refused, unknown host, timeout). */
export class OllamaUnavailableError extends Error {
  constructor(
    readonly host: string,
    readonly reason: string,
  ) {
    super(
      `Ollama is not reachable at ${host} (${reason}). Start it with \`ollama serve\` (or the Ollama app), ` +
        'or set OLLAMA_HOST to the address of the server that runs it.',
    );
    this.name = 'OllamaUnavailableError';
  }
}

/** The server answered with an error. */
export class OllamaRequestError extends Error {
  constructor(
    readonly host: string,
    readonly endpoint: string,
    /** HTTP status, undefined when the error came inside a streamed response. */
    readonly status: number | undefined,
    readonly serverMessage: string,
  ) {
    super(`Ollama at ${host}: ${endpoint} failed${status === undefined ? '' : ` (HTTP ${status})`}: ${serverMessage}`);
    this.name = 'OllamaRequestError';
  }
}

/** The server hashed the uploaded blob to another digest than ours (the file changed, or was cut short). */
export class OllamaDigestMismatchError extends OllamaRequestError {
  constructor(host: string, endpoint: string, status: number, serverMessage: string, readonly file: string) {
    super(host, endpoint, status, `${serverMessage} (uploading ${file})`);
    this.name = 'OllamaDigestMismatchError';
  }
}

/**
 * The server would not create a model with an ADAPTER layer. Ollama releases from v0.34.1 are
 * reported to refuse adapters on create; the export falls back to a fused GGUF then.
 */
export class OllamaAdapterRefusedError extends Error {
  constructor(
    readonly host: string,
    readonly serverVersion: string,
    readonly serverMessage: string,
  ) {
    super(
      `Ollama ${serverVersion} at ${host} refused the LoRA adapter: ${serverMessage}. ` +
        'Export a fused model instead (--gguf q4_k_m, or --fallback fused).',
    );
    this.name = 'OllamaAdapterRefusedError';
  }
}

/** True when the error means "this Ollama does not take our adapter": fall back to a fused export. */
export function isOllamaAdapterRefused(e: unknown): e is OllamaAdapterRefusedError {
  return e instanceof OllamaAdapterRefusedError;
}

/**
 * Whether a create error with adapters is about the adapter itself: the message names adapters or
 * LoRA and is not about the transport (blobs, digests, names), as a refusal of adapters as such or
 * Ollama's own adapter checks (server/create.go: "only one adapter is currently supported") are.
 */
export function isAdapterRefusalMessage(message: string): boolean {
  const m = message.toLowerCase();
  if (/digest|blob|invalid model name/.test(m)) return false;
  return /adapter|lora/.test(m);
}
