/**
 * One sha256 per record over its normalised content (roles and texts, NFC, whitespace collapsed).
 * Its first 8 bytes key exact-duplicate detection; the next 6 place the record in a split. Both
 * depend on the content alone, so a record keeps its split when an export gains new records.
 */
import { createHash } from 'node:crypto';
import type { RecordBody } from './record.js';

export interface ContentHash {
  hex: string;
  exactHi: number;
  exactLo: number;
  /** Uniform in [0, 1). */
  splitUnit: number;
}

export function normalizeText(text: string): string {
  return text.normalize('NFC').replace(/\s+/gu, ' ').trim();
}

export function normalizedContent(body: RecordBody): string {
  if (body.kind === 'text') return `text\u0001${normalizeText(body.text)}`;
  return body.messages.map((m) => `${m.role}\u0001${normalizeText(m.content)}`).join('\u0002');
}

export function contentHash(body: RecordBody): ContentHash {
  return hashNormalized(normalizedContent(body));
}

export function hashNormalized(normalized: string): ContentHash {
  const digest = createHash('sha256').update(normalized).digest();
  return {
    hex: digest.toString('hex'),
    exactHi: digest.readUInt32LE(0),
    exactLo: digest.readUInt32LE(4),
    splitUnit: digest.readUIntBE(8, 6) / 2 ** 48,
  };
}
