// LM head + masked next-token cross-entropy, token chunk by token chunk, with a hand-written
// backward pass (the approach of Liger's fused linear cross-entropy and Apple's cut cross-entropy):
// neither pass holds more than one chunk's [tokens, vocab] logits, so memory does not grow with
// tokens × vocab. The backward pass recomputes each chunk's logits from the saved log-sum-exp and
// returns only d loss / d h: the head is frozen here (LoRA never adapts it).
#pragma once

#include "handles.h"
#include "model/config.h"
#include "model/linear.h"

namespace mlxq::model {

/** Tokens per chunk that keep one chunk's float32 logits near 32 MiB. */
int default_loss_chunk_tokens(int vocab);

/**
 * Σ mask·(logsumexp(z) − z[target]) with z = float32(h·Wᵀ + bias) for h [N, D] (compute dtype),
 * targets [N] int32, mask [N] float32; the same roundings as materialising all of z at once.
 */
Array chunked_cross_entropy_sum(const mlx_array h, const Linear& head, LinearKernel kernel, const mlx_array targets,
                                const mlx_array mask, int chunk_tokens);

}  // namespace mlxq::model
