// Masked next-token cross-entropy with a hand-written gradient. MLX's automatic VJP of
// logsumexp + take_along_axis makes a dozen passes over the [B, L, vocab] logits (a scatter into
// a zero array among them); softmax − one-hot is the same gradient in a few passes, and with a
// 32k vocabulary those passes are a large part of a small model's step.
#pragma once

#include "handles.h"

namespace mlxq::model {

/** Σ mask·(logsumexp(logits) − logits[target]); logits [B, L, V] float32, targets int32, mask float32. */
Array masked_cross_entropy_sum(const mlx_array logits, const mlx_array targets, const mlx_array mask);

}  // namespace mlxq::model
