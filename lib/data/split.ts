/**
 * Train/valid/test assignment from the content hash. The test slice is [0, test), valid is
 * [test, test + valid), the rest is train: so growing the valid fraction later only moves records
 * out of train, never from test into train.
 */
import { z } from 'zod';

export const SPLITS = ['train', 'valid', 'test'] as const;
export type SplitName = (typeof SPLITS)[number];

export const splitFractionsSchema = z
  .object({ valid: z.number().min(0).max(1), test: z.number().min(0).max(1) })
  .refine((f) => f.valid + f.test < 1, { message: 'valid + test must leave something for train' });
export type SplitFractions = z.infer<typeof splitFractionsSchema>;

export const DEFAULT_SPLIT_FRACTIONS: SplitFractions = { valid: 0.05, test: 0.05 };

export function assignSplit(unit: number, fractions: SplitFractions): SplitName {
  if (unit < fractions.test) return 'test';
  if (unit < fractions.test + fractions.valid) return 'valid';
  return 'train';
}
