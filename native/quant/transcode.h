// Transcoding a tensor from its GGUF (or safetensors) bytes to another GGUF type without ever
// holding it as float32: threads take a few rows at a time, read their bytes (pread from a file, or
// from memory), decode them to float32 in a small buffer, add an optional addend (an adapter's
// delta), and encode them straight into their place in the output. Row-major [rows, cols] tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "block_decode.h"
#include "block_types.h"

namespace mlxq::quant {

/** Threads to use when none is asked for: the hardware's count (at least 1). */
unsigned default_encode_threads();

struct TranscodeSpec {
  const DecodeTypeInfo* from = nullptr;
  const BlockTypeInfo* to = nullptr;
  size_t rows = 0;
  size_t cols = 0;
  /** The source: a file descriptor read with pread at `offset`, or `memory` when fd < 0. */
  int fd = -1;
  uint64_t offset = 0;
  const uint8_t* memory = nullptr;
  /** Output row r is source row row_map[r] (all in [0, rows)), or row r itself when null. */
  const int32_t* row_map = nullptr;
  /** rows × cols floats added to the decoded values (in output row order), or null. */
  const float* addend = nullptr;
  unsigned threads = 1;
};

/** Why a transcoding cannot be used, at the first value concerned (in output order). */
struct TranscodeProblem {
  enum Kind { kNone, kNonFiniteInput, kOverflow, kReadError, kEndOfFile, kOutOfMemory } kind = kNone;
  size_t value_index = 0;
  int error_number = 0;  // errno of a read error
};

/**
 * Transcodes the whole tensor into `dst` (encoded_bytes(to, rows, cols) bytes). Reports the first
 * NaN or infinite value (after the addend), or else the first block llama.cpp would refuse, or a
 * failed read. Bytes equal llama.cpp's: decoding is ggml's to_float, encoding its reference
 * quantizer, and a float source copied to its own type keeps its bytes (as llama_model_quantize
 * copies a tensor whose type does not change).
 */
TranscodeProblem transcode_parallel(const TranscodeSpec& spec, uint8_t* dst);

/** Bytes of one source row. */
size_t source_row_bytes(const TranscodeSpec& spec);

}  // namespace mlxq::quant
