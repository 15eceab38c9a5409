// The LM head's cross-entropy for a large quantized head, vocabulary block by vocabulary block:
// each block of head rows is dequantized once a pass, its logits for every token are folded into
// a running log-sum-exp, and (with the gradient) softmax·W is gathered the same way, rescaled as
// the running maximum moves (the online softmax of flash attention, with W in place of V). Neither
// the dense head (0.5 GB at 7B) nor [tokens, vocab] logits ever exist whole.
#pragma once

#include "handles.h"
#include "model/linear.h"

namespace mlxq::model {

struct HeadLoss {
  Array loss;  // Σ mask·CE
  Array dh;    // d loss / d h for a cotangent of 1, in h's dtype (empty without the gradient)
};

/**
 * Σ mask·(logsumexp(z) − z[target]) with z = float32(h·Wᵀ + bias), h [N, D], targets [N] int32,
 * mask [N] float32, W quantized; exact to float rounding.
 */
HeadLoss vocab_blocked_cross_entropy(const Linear& head, const mlx_array h, const mlx_array targets,
                                     const mlx_array mask, bool gradient);

}  // namespace mlxq::model
