// LM head + masked next-token cross-entropy, token chunk by token chunk, with a hand-written
// gradient (the approach of Liger's fused linear cross-entropy): no more than one chunk's
// [tokens, vocab] logits exist at a time (about two: see `after` in chunked_loss.cc), so memory
// does not grow with tokens × vocab. When
// differentiable, each chunk's d loss / d h is computed in the forward pass while its logits are at
// hand (the loss is the last node, so its cotangent is a scalar the backward pass multiplies in):
// two head matmuls a step, as with whole logits, and no recompute. Only h gets a gradient: the head
// is frozen here (LoRA never adapts it). A head large enough to be dequantized in blocks, under the
// dequantize kernel, goes vocabulary block by vocabulary block instead, whatever the chunk size
// (vocab_blocked_loss.h): token chunks would each dequantize the whole head again.
#pragma once

#include <memory>

#include "handles.h"
#include "model/config.h"
#include "model/linear.h"

namespace mlxq::model {

class CompiledOps;

/** Tokens per chunk that keep one chunk's float32 logits near 8 MiB. */
int default_loss_chunk_tokens(int vocab);

/**
 * With `ops` (compiled kernels) the differentiable path takes one exp pass a chunk instead of two.
 * Σ mask·(logsumexp(z) − z[target]) with z = float32(h·Wᵀ + bias) for h [N, D] (compute dtype),
 * targets [N] int32, mask [N] float32; the same roundings as materialising all of z at once.
 */
Array chunked_cross_entropy_sum(const mlx_array h, const Linear& head, LinearKernel kernel, const mlx_array targets,
                                const mlx_array mask, int chunk_tokens, bool differentiable,
                                std::shared_ptr<const CompiledOps> ops = nullptr);

}  // namespace mlxq::model
