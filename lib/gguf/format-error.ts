/** A GGUF file that is truncated, corrupt or outside what this library accepts. */
export class GgufFormatError extends Error {
  override readonly name = 'GgufFormatError';
  constructor(
    readonly file: string,
    readonly detail: string,
    readonly offset?: number,
  ) {
    super(`${file}: ${detail}${offset === undefined ? '' : ` (at byte ${offset})`}`);
  }
}
