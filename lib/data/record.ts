/**
 * The canonical training record every input format is converted into. Everything downstream
 * (filters, dedupe, templates, masks) sees only this shape.
 */
export const ROLES = ['system', 'user', 'assistant', 'tool'] as const;
export type Role = (typeof ROLES)[number];

export interface ChatMessage {
  role: Role;
  content: string;
  /** 0 excludes an assistant turn from the loss; absent or 1 trains it. Ignored for other roles. */
  weight?: 0 | 1;
}

/** A chat goes through the chat template; plain text is trained whole, followed by EOS. */
export type RecordBody = { kind: 'chat'; messages: ChatMessage[] } | { kind: 'text'; text: string };

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
