// Next-token sampling: greedy, temperature, top-k, top-p, from an explicit PRNG key.
#pragma once

#include <cstdint>

#include "handles.h"

namespace mlxq::model {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;
  int top_k = 0;  // 0: off
};

/** logits: [V] float32. Advances `key`. */
int sample_token(const mlx_array logits, const SamplerOptions& options, Array& key);

/** The same, unevaluated: a [1] int32 array, so that several rows' draws evaluate together. */
Array sample_token_lazy(const mlx_array logits, const SamplerOptions& options, Array& key);

}  // namespace mlxq::model
