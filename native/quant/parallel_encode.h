// Encoding a whole tensor on several threads: the blocks are split evenly and each thread writes
// its own disjoint part of the one output buffer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "block_types.h"

namespace mlxq::quant {

/** Threads to use when none is asked for: the hardware's count (at least 1). */
unsigned default_encode_threads();

/** Why an encoding cannot be used, at the first value concerned. */
struct EncodeProblem {
  enum Kind { kNone, kNonFiniteInput, kOverflow } kind = kNone;
  size_t value_index = 0;
};

/**
 * Encodes `count` values (a multiple of the block size) into `dst` using up to `threads` threads,
 * fewer for small tensors. The calling thread does one share itself. Reports the first NaN or
 * infinite input, or else the first block llama.cpp would refuse (a value or half scale that
 * overflowed, see first_invalid_block).
 */
EncodeProblem encode_parallel(const BlockTypeInfo& type, const float* src, size_t count, uint8_t* dst, unsigned threads);

}  // namespace mlxq::quant
