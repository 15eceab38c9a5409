// Gradient checkpointing of decoder blocks (checkpoint.cc).
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "model/block_context.h"

namespace mlxq::model {

/**
 * Blocks [first, last) as one mlx_checkpoint closure: only h and the run's LoRA parameters are
 * kept for the backward pass. `nested`: each block inside is checkpointed again, so recomputing
 * the run keeps just its blocks' inputs.
 */
Array checkpointed_run(const Model& model, int first, int last, bool nested, const mlx_array h,
                       std::shared_ptr<const Model::BlockContext> ctx, const std::vector<mlx_array>* lora);

/**
 * Blocks per outer checkpoint: 1 (each block on its own) unless all blocks' inputs together
 * (`block_input_bytes` each) pass 512 MiB, then ⌈√layers⌉.
 */
int checkpoint_run_length(int layers, size_t block_input_bytes);

}  // namespace mlxq::model
