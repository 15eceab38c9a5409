/**
 * The canonical training record every input format is converted into. Everything downstream
 * (filters, dedupe, templates, masks) sees only this shape.
 */
// A record's body is the conversation the tokenizer layer encodes.
export { ROLES, type Role, type ChatMessage, type RecordBody } from '../tokenizer/conversation.js';
import type { RecordBody } from '../tokenizer/conversation.js';

export const RECORD_FORMATS = [
  'chatml',
  'alpaca',
  'sharegpt',
  'completion',
  'text',
  'iceburg-conversations',
  'iceburg-reasoning',
  'iceburg-quality',
  'iceburg-agent',
] as const;
export type RecordFormat = (typeof RECORD_FORMATS)[number];

export interface SourceLocation {
  file: string;
  line: number;
}

export interface DataRecord {
  body: RecordBody;
  /** Quality in [0, 1] when the source scored it; null when unscored. */
  quality: number | null;
  /** Identifier used to join ICEBURG quality metrics to conversations. */
  conversationId?: string;
  format: RecordFormat;
  source: SourceLocation;
}

/** Quality metrics are not training records: they are joined onto conversations by id. */
export interface QualityUpdate {
  conversationId: string;
  quality: number | null;
  source: SourceLocation;
}

export function messageCount(body: RecordBody): number {
  return body.kind === 'chat' ? body.messages.length : 1;
}
