/** commander argument parsers for numbers, with messages that name what was expected. */
import { InvalidArgumentError } from 'commander';

export function integerArg(min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}`);
    return n;
  };
}

export function numberArg(min: number, max = Infinity): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`expected a number in [${min}, ${max}]`);
    return n;
  };
}

const MLX_BITS = [2, 3, 4, 5, 6, 8];
const MLX_GROUPS = [32, 64, 128];

/** `--bits`: an MLX affine bit width, or 'none' for a dense base. */
export function bitsArg(value: string): number | 'none' {
  if (value === 'none') return 'none';
  const n = Number(value);
  if (!MLX_BITS.includes(n)) throw new InvalidArgumentError(`expected one of ${MLX_BITS.join(', ')} or none`);
  return n;
}

export function groupSizeArg(value: string): number {
  const n = Number(value);
  if (!MLX_GROUPS.includes(n)) throw new InvalidArgumentError(`expected one of ${MLX_GROUPS.join(', ')}`);
  return n;
}

/** The loader's `quantization` option from `--bits`/`--group-size`; undefined keeps the loader's default. */
export function quantizationOf(bits: number | 'none' | undefined, groupSize: number | undefined): { bits: number; groupSize: number } | 'none' | undefined {
  if (bits === 'none') return 'none';
  if (bits === undefined && groupSize === undefined) return undefined;
  return { bits: bits ?? 4, groupSize: groupSize ?? 64 };
}
