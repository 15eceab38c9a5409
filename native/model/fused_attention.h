// Causal self-attention in query blocks. Without a fused attention kernel (MLX's CPU backend), the
// scores, mask, softmax and their gradients are full [length, length] passes per head, half of
// them masked away; a block of queries needs only the keys up to its last row. A custom VJP takes
// the backward pass block by block too, recomputing each block's softmax (as flash attention
// does), when all blocks' scores together would pass 256 MiB: differentiated through, every
// block's probabilities are kept for the backward pass and its gradients computed for all blocks
// at once (1.4 GB a layer at 7B and 2048 tokens). Below that MLX's own differentiation is faster.
#pragma once

#include "handles.h"
#include "model/config.h"

namespace mlxq::model {

/** Rows per query block for this build on this stream's device; 0: attend in one piece. */
int attention_block_rows(const BuildOptions& build);

/**
 * softmax(scale·q·kᵀ + mask)·v for q, k, v [B, H, L, D] of the same length L, where row i sees no
 * key after i (mask_mode "causal", or "array" with a causal mask [B or 1, 1, L, L]); `rows` per
 * block. Equals one fast scaled_dot_product_attention call up to float rounding.
 */
Array blocked_causal_attention(const mlx_array q, const mlx_array k, const mlx_array v, float scale,
                               const char* mask_mode, const mlx_array mask, int rows);

}  // namespace mlxq::model
