import { describe, expect, it } from 'vitest';
import { exactMatch, isRefusal, tokenF1 } from '../../lib/eval/metrics.js';

describe('answer metrics', () => {
  it('token F1 follows SQuAD: lower case, ASCII punctuation and articles dropped, shared tokens as a multiset', () => {
    expect(tokenF1('The cat sat on the mat.', 'a cat sat on a mat')).toBe(1);
    // P = 1/2, R = 1: F1 = 2/3.
    expect(tokenF1('Paris, France', 'paris')).toBeCloseTo(2 / 3, 15);
    // "nine" once in the reference: the second copy is not shared.
    expect(tokenF1('nine nine', 'nine')).toBeCloseTo(2 / 3, 15);
    // P = 2/3, R = 2/4: F1 = 4/7.
    expect(tokenF1('red green blue', 'red green yellow black')).toBeCloseTo(4 / 7, 15);
    expect(tokenF1('well-known', 'wellknown')).toBe(1);
    expect(tokenF1('', '')).toBe(1);
    expect(tokenF1('the', 'cat')).toBe(0);
    expect(tokenF1('x', '')).toBe(0);
  });

  it('exact match trims, collapses whitespace and case-folds, nothing more', () => {
    expect(exactMatch('  Paris \n', 'paris')).toBe(true);
    expect(exactMatch('a \t b', 'A B')).toBe(true);
    expect(exactMatch('The Nile', 'Nile')).toBe(false);
    expect(exactMatch('Paris.', 'Paris')).toBe(false);
  });

  it('refusals by phrase, curly apostrophes included', () => {
    expect(isRefusal('I’m sorry, but I can’t help with that.')).toBe(true);
    expect(isRefusal('As an AI, I have no opinion.')).toBe(true);
    expect(isRefusal('I cannot   do that')).toBe(true);
    expect(isRefusal('Sorry to hear that; here is the answer.')).toBe(false);
    expect(isRefusal('Paris')).toBe(false);
  });
});
