// A frozen SwiGLU MLP, down(silu(gate(x))·up(x)), in blocks of its intermediate features: each
// block dequantizes its rows of gate and up and its columns of down, and adds its share of the
// output, so neither the [tokens, 2 × intermediate] projections (470 MB at 7B and 2048 tokens) nor
// their gradients exist whole. A custom VJP takes the backward pass the same way, recomputing each
// block's gate and up, which the forward pass frees; under checkpointing MLX never evaluates the
// recomputed forward's output, so a step multiplies and dequantizes each weight twice, not three times.
#pragma once

#include "handles.h"
#include "model/config.h"
#include "model/linear.h"

namespace mlxq::model {

/**
 * Whether blocked_mlp takes this MLP: no adapter or bias on its projections, all three quantized,
 * the dequantize kernel, and a down projection large enough to be dequantized in blocks (dequantizes_in_blocks).
 */
bool mlp_in_blocks(const Linear& gate, const Linear& up, const Linear& down, LinearKernel kernel, bool adapted);

/** down(silu(gate(x))·up(x)) for x [N, D]: [N, D], differentiable in x. */
Array blocked_mlp(const Linear& gate, const Linear& up, const Linear& down, const mlx_array x);

}  // namespace mlxq::model
