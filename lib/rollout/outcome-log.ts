/** Rollout outcomes as JSONL: one line per request or feedback, appended, read back with zod. */
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';

export const outcomeRecordSchema = z.object({
  time: z.string(),
  key: z.string(),
  arm: z.enum(['control', 'candidate']),
  model: z.string(),
  ok: z.boolean().optional(),
  score: z.number().min(0).max(1).optional(),
  latencyMs: z.number().min(0).optional(),
  tokens: z.int().min(0).optional(),
  detail: z.string().optional(),
});

export type OutcomeRecord = z.infer<typeof outcomeRecordSchema>;

/** One line per call; a single appendFile of a whole line keeps concurrent writers' lines whole. */
export async function appendOutcome(path: string, record: OutcomeRecord): Promise<void> {
  const line = `${JSON.stringify(outcomeRecordSchema.parse(record))}\n`;
  await mkdir(dirname(path), { recursive: true });
  await appendFile(path, line, 'utf8');
}

/** Reads an outcome log; a malformed line is an error naming the file and line. */
export async function readOutcomes(path: string): Promise<OutcomeRecord[]> {
  const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return '';
    throw new Error(`${path}: ${error.message}`);
  });
  const records: OutcomeRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line.length === 0) continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (error) {
      // A line cut off by a crash mid-append is the last one; anything else is corruption.
      if (i === lines.length - 1) break;
      throw new Error(`${path}:${i + 1}: not JSON (${(error as Error).message})`);
    }
    const parsed = outcomeRecordSchema.safeParse(json);
    if (!parsed.success) throw new Error(`${path}:${i + 1}: not an outcome record (${parsed.error.issues[0]?.message ?? 'invalid'})`);
    records.push(parsed.data);
  }
  return records;
}
