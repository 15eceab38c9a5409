/** What the conversation encoder takes: a chat of role-tagged messages, or plain text. */
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
