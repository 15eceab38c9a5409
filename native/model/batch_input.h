// A training/eval batch copied out of JS typed arrays, turned into MLX arrays on the MLX thread.
#pragma once

#include <napi.h>

#include <cstdint>
#include <vector>

#include "handles.h"
#include "model/llama.h"

namespace mlxq::model {

struct BatchInput {
  int batch = 0;
  int length = 0;
  std::vector<int32_t> tokens, targets, positions, segments;
  std::vector<float> mask;

  /**
   * JS thread: { tokens: Int32Array, shape: [B, L], targets?, mask?, positions?, segments? }.
   * Token and target ids must lie in [0, vocab_size): MLX's gathers do not check their indices.
   */
  static BatchInput parse(const Napi::Value& value, bool needs_targets, int vocab_size);
};

/** MLX thread: the arrays of a BatchInput, kept alive with the Batch that views them. */
struct BatchArrays {
  Array tokens, targets, mask, positions, segments;
  explicit BatchArrays(const BatchInput& in);
  Batch view() const;
};

}  // namespace mlxq::model
