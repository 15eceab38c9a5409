/**
 * Why a line or record was rejected. Codes are stable strings: the report groups by them and tests
 * assert them. Whether a reason is an error (the line is wrong; --strict stops) or a filter (the
 * line is fine but left out) is decided where it is raised; see docs/data.md for the list.
 */
export const REJECTION_REASONS = [
  'invalid-utf8',
  'line-too-long',
  'broken-json',
  'not-an-object',
  'unknown-format',
  'schema',
  'empty-messages',
  'empty-content',
  'unknown-role',
  'bad-weight',
  'no-assistant-turn',
  'invalid-generation',
  'unscored',
  'below-min-quality',
  'too-few-messages',
  'template-error',
  'tokenizer-error',
  'encode-error',
  'too-long',
  'truncated-away',
  'no-trained-tokens',
] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

export class RecordError extends Error {
  constructor(
    readonly reason: RejectionReason,
    message: string,
  ) {
    super(message);
    this.name = 'RecordError';
  }
}

export interface Rejection {
  reason: RejectionReason;
  file: string;
  line: number;
  message: string;
}

export function formatRejection(r: Rejection): string {
  return `${r.file}:${r.line}: ${r.reason}: ${r.message}`;
}

/** Thrown by `--strict` runs at the first rejection, carrying its location. */
export class StrictModeError extends Error {
  constructor(readonly rejection: Rejection) {
    super(`${formatRejection(rejection)} (stopping: --strict)`);
    this.name = 'StrictModeError';
  }
}
