import { z } from 'zod';

/**
 * A memory size in bytes: a number, or a string such as "24GB" or "512MiB". SI suffixes (KB, MB,
 * GB, TB) are powers of 1000 and IEC suffixes (KiB, MiB, GiB, TiB) powers of 1024, so "24GB" means
 * exactly what it says on a disk label and "24GiB" what Activity Monitor shows.
 */
const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$/;

const MULTIPLIERS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
};

/** Bytes for a size string, or undefined when it is not one. */
export function parseMemorySize(text: string): number | undefined {
  const match = SIZE_PATTERN.exec(text);
  if (!match) return undefined;
  const bytes = Math.round(Number(match[1]) * (MULTIPLIERS[match[2] ?? 'B'] ?? Number.NaN));
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

export const memorySizeSchema = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const bytes = typeof value === 'number' ? value : parseMemorySize(value);
  if (bytes !== undefined && Number.isSafeInteger(bytes) && bytes > 0) return bytes;
  ctx.addIssue({
    code: 'custom',
    message: `expected a positive number of bytes or a size such as "24GB" or "512MiB", got ${JSON.stringify(value)}`,
  });
  return z.NEVER;
});
