/**
 * ICEBURG-style conversation logs for the demo: the shape ICEBURG exports (iceburg-conversations:
 * messages plus metadata with a quality score and a category), across its kinds of query —
 * research, code, explanation, current events, synthesis — with a few low-scored ones that
 * `prepare --min-quality` drops, as in a real export.
 */
import { mulberry32 } from '../data/rng.js';

export const DEMO_CATEGORIES = ['research', 'code', 'explanation', 'current-events', 'synthesis'] as const;
export type DemoCategory = (typeof DEMO_CATEGORIES)[number];

const TOPICS = ['glacier', 'sea ice', 'ocean heat', 'climate data', 'ice core', 'heat wave'];

const QUESTION: Record<DemoCategory, (topic: string) => string> = {
  research: (t) => `Find a source on ${t}.`,
  code: (t) => `Write python code to load ${t} data.`,
  explanation: (t) => `Explain ${t} simply.`,
  'current-events': (t) => `What is new about ${t}?`,
  synthesis: (t) => `Connect ${t} and the ocean.`,
};

const ANSWER: Record<DemoCategory, (topic: string) => string> = {
  research: (t) => `Source: the ${t} research summary.`,
  code: (t) => `def load(): return data("${t}")`,
  explanation: (t) => `The ${t} answer: heat moves ice.`,
  'current-events': (t) => `New ${t} data came in.`,
  synthesis: (t) => `The ${t} and the ocean share heat.`,
};

export interface DemoConversation {
  messages: { role: 'user' | 'assistant'; content: string }[];
  metadata: { conversation_id: string; quality_score: number; category: DemoCategory; timestamp: string };
}

/** `count` conversations, deterministic for a seed; about one in eight scores below 0.8. */
export function demoConversations(count: number, seed = 7): DemoConversation[] {
  const rng = mulberry32(seed);
  return Array.from({ length: count }, (_, i) => {
    const category = DEMO_CATEGORIES[i % DEMO_CATEGORIES.length]!;
    const topic = TOPICS[Math.floor(rng() * TOPICS.length)]!;
    const lowQuality = rng() < 0.125;
    return {
      messages: [
        { role: 'user', content: QUESTION[category](topic) },
        { role: 'assistant', content: lowQuality ? 'I do not know.' : ANSWER[category](topic) },
      ],
      metadata: {
        conversation_id: `demo-${i}`,
        quality_score: lowQuality ? 0.3 : Math.round((0.8 + rng() * 0.2) * 100) / 100,
        category,
        timestamp: new Date(Date.UTC(2026, 10, 1) + i * 3_600_000).toISOString(),
      },
    };
  });
}

/** Prompts of each kind from the logs, with the answers the logs give them, for base-vs-tuned evaluation. */
export function demoEvalSet(): { prompt: string; reference: string; category: DemoCategory }[] {
  return DEMO_CATEGORIES.map((category, i) => {
    const topic = TOPICS[i % TOPICS.length]!;
    return { prompt: QUESTION[category](topic), reference: ANSWER[category](topic), category };
  });
}
