/**
 * Renders a conversation and finds where each chosen message's content landed in the output, for
 * any template: the chosen contents are wrapped in private-use marker characters, the template is
 * rendered, and the markers are cut out again while recording their positions. The result must equal
 * a plain render character for character, or we refuse (the template rewrote the content).
 */
import type { ChatTemplate, TemplateMessage } from './chat-template.js';

const OPEN = '\uE000';
const INDEX_END = '\uE001';
const CLOSE = '\uE002';
const MARKERS = /[\uE000-\uE002]/;

export interface ContentSpan {
  message: number;
  /** UTF-16 offsets into the rendered text, [start, end). */
  start: number;
  end: number;
}

export interface SpanRender {
  text: string;
  spans: ContentSpan[];
}

export class TemplateSpanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateSpanError';
  }
}

export function renderWithSpans(template: ChatTemplate, messages: readonly TemplateMessage[], marked: ReadonlySet<number>): SpanRender {
  messages.forEach((m, i) => {
    if (MARKERS.test(m.content)) throw new TemplateSpanError(`message ${i} contains U+E000..U+E002, which mark content spans`);
  });
  const wrapped = messages.map((m, i) => (marked.has(i) ? { ...m, content: `${OPEN}${i}${INDEX_END}${m.content}${CLOSE}` } : m));
  const raw = template.render(wrapped);
  const plain = template.render(messages);

  let text = '';
  const spans: ContentSpan[] = [];
  const seen = new Set<number>();
  let from = 0;
  for (let open = raw.indexOf(OPEN, from); open !== -1; open = raw.indexOf(OPEN, from)) {
    const indexEnd = raw.indexOf(INDEX_END, open);
    const close = raw.indexOf(CLOSE, indexEnd);
    if (indexEnd < 0 || close < 0) throw new TemplateSpanError(`template ${template.name} cut a content marker apart`);
    const message = Number(raw.slice(open + 1, indexEnd));
    if (seen.has(message)) throw new TemplateSpanError(`template ${template.name} renders message ${message} more than once`);
    seen.add(message);
    text += raw.slice(from, open);
    const start = text.length;
    text += raw.slice(indexEnd + 1, close);
    spans.push({ message, start, end: text.length });
    from = close + 1;
  }
  text += raw.slice(from);
  if (MARKERS.test(text)) throw new TemplateSpanError(`template ${template.name} altered a content marker`);
  for (const i of marked) {
    if (!seen.has(i)) throw new TemplateSpanError(`template ${template.name} does not render message ${i} (${messages[i]?.role})`);
  }
  if (text !== plain) throw new TemplateSpanError(`template ${template.name} changes message content when rendering, so spans cannot be located`);
  return { text, spans };
}
