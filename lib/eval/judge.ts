/**
 * Pairwise judging by a model Ollama serves: for each prompt, the judge sees the base's answer and
 * a candidate's as "A" and "B" in an order drawn from the seed, and says A, B or TIE. Win rate =
 * wins / (wins + losses): ties count for neither side and are reported beside it, so a judge that
 * cannot tell the arms apart gives an interval around nothing rather than a pull toward 0.5.
 */
import { z } from 'zod';
import { mulberry32 } from '../data/rng.js';
import { ollamaCall, ollamaClient, ollamaHostUrl } from '../export/ollama-connection.js';
import { wilsonInterval } from '../stats/wilson.js';

export interface JudgeCase {
  readonly id: string;
  readonly prompt: string;
  readonly reference?: string;
  /** Arm name → answer text. */
  readonly answers: Readonly<Record<string, string>>;
}

export type Verdict = 'win' | 'loss' | 'tie' | 'invalid';

export interface JudgeDecision {
  readonly id: string;
  readonly arm: string;
  /** Which arm was shown as A and which as B. */
  readonly order: readonly [string, string];
  /** The judge's reply as given. */
  readonly reply: string;
  /** For the candidate arm against the baseline. */
  readonly verdict: Verdict;
}

export interface WinRate {
  readonly arm: string;
  readonly against: string;
  readonly wins: number;
  readonly losses: number;
  readonly ties: number;
  /** Replies that were not A, B or TIE: left out of every count above. */
  readonly invalid: number;
  /** wins / (wins + losses); null with no decisive comparison. */
  readonly win_rate: number | null;
  /** Wilson 95% interval of win_rate. */
  readonly low: number;
  readonly high: number;
}

export interface JudgeResult {
  readonly model: string;
  readonly host: string;
  readonly seed: number;
  readonly win_rates: WinRate[];
  readonly decisions: JudgeDecision[];
}

export interface JudgeOptions {
  readonly model: string;
  /** OLLAMA_HOST form; default the environment's. */
  readonly host?: string;
  readonly baseline: string;
  readonly candidates: readonly string[];
  readonly cases: readonly JudgeCase[];
  readonly seed: number;
  readonly signal?: AbortSignal;
}

export const JUDGE_SYSTEM =
  'You compare two answers to the same question. Judge correctness first, then helpfulness and clarity. ' +
  'Reply with exactly one word: A if answer A is better, B if answer B is better, TIE if neither is better.';

export function judgePrompt(c: Pick<JudgeCase, 'prompt' | 'reference'>, a: string, b: string): string {
  return [
    `Question:\n${c.prompt}`,
    ...(c.reference !== undefined ? [`Reference answer:\n${c.reference}`] : []),
    `Answer A:\n${a}`,
    `Answer B:\n${b}`,
    'Which answer is better? Reply A, B or TIE.',
  ].join('\n\n');
}

/** A, B or TIE as the reply's first word (case and trailing punctuation ignored); anything else is undefined. */
export function parseJudgeReply(reply: string): 'A' | 'B' | 'TIE' | undefined {
  const word = /^[\s*"'`(]*([A-Za-z]+)/.exec(reply)?.[1]?.toUpperCase();
  return word === 'A' || word === 'B' || word === 'TIE' ? word : undefined;
}

const chatReply = z.object({ message: z.object({ content: z.string() }) });

export function winRateOf(arm: string, against: string, verdicts: readonly Verdict[]): WinRate {
  const count = (v: Verdict) => verdicts.filter((x) => x === v).length;
  const wins = count('win');
  const losses = count('loss');
  const interval = wilsonInterval(wins, wins + losses);
  return { arm, against, wins, losses, ties: count('tie'), invalid: count('invalid'), win_rate: wins + losses > 0 ? interval.rate : null, low: interval.low, high: interval.high };
}

/** Fails, naming the host, if Ollama does not answer there or does not have the judge model; returns the host URL. */
export async function checkJudge(model: string, host?: string): Promise<string> {
  const url = ollamaHostUrl(host);
  const client = ollamaClient(url);
  await ollamaCall(url, '/api/version', () => client.version());
  await ollamaCall(url, '/api/show', () => client.show({ model }));
  return url;
}

/** Asks the judge about every (candidate, case) pair; fails first, naming the host, if Ollama does not answer or lacks the model. */
export async function judgeArms(options: JudgeOptions): Promise<JudgeResult> {
  const host = await checkJudge(options.model, options.host);
  const client = ollamaClient(host);
  const rng = mulberry32(options.seed);
  const decisions: JudgeDecision[] = [];
  for (const arm of options.candidates) {
    for (const c of options.cases) {
      options.signal?.throwIfAborted();
      const candidateFirst = rng() < 0.5;
      const order: [string, string] = candidateFirst ? [arm, options.baseline] : [options.baseline, arm];
      const response = await ollamaCall(host, '/api/chat', () =>
        client.chat({
          model: options.model,
          stream: false,
          options: { temperature: 0, seed: options.seed },
          messages: [
            { role: 'system', content: JUDGE_SYSTEM },
            { role: 'user', content: judgePrompt(c, c.answers[order[0]] ?? '', c.answers[order[1]] ?? '') },
          ],
        }),
      );
      const reply = chatReply.parse(response).message.content;
      const said = parseJudgeReply(reply);
      const verdict: Verdict = said === undefined ? 'invalid' : said === 'TIE' ? 'tie' : (said === 'A') === candidateFirst ? 'win' : 'loss';
      decisions.push({ id: c.id, arm, order, reply, verdict });
    }
  }
  const win_rates = options.candidates.map((arm) => winRateOf(arm, options.baseline, decisions.filter((d) => d.arm === arm).map((d) => d.verdict)));
  return { model: options.model, host, seed: options.seed, win_rates, decisions };
}
