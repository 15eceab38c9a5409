/**
 * Watches an Ollama response as it streams through (NDJSON lines, or one JSON object when not
 * streaming) for what an outcome records: the final token count and any error, without holding
 * the whole response.
 */
export class ResponseTap {
  private partial = '';
  private last: Record<string, unknown> | undefined;
  private error: string | undefined;

  push(chunk: Buffer): void {
    const lines = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.take(line);
  }

  private take(line: string): void {
    if (line.trim().length === 0) return;
    try {
      const value: unknown = JSON.parse(line);
      if (value === null || typeof value !== 'object') return;
      const record = value as Record<string, unknown>;
      if (typeof record.error === 'string') this.error = record.error;
      if (record.done === true) this.last = record;
    } catch {
      // Not JSON (an HTML error page, say): nothing to learn from it.
    }
  }

  private flush(): void {
    if (this.partial.length > 0) {
      this.take(this.partial);
      this.partial = '';
    }
  }

  sawError(): boolean {
    this.flush();
    return this.error !== undefined;
  }

  errorText(): string | undefined {
    this.flush();
    return this.error;
  }

  /** Generated tokens of the final (done) message. */
  evalCount(): number | undefined {
    this.flush();
    const count = this.last?.eval_count;
    return typeof count === 'number' && Number.isInteger(count) && count >= 0 ? count : undefined;
  }
}
