// Per-forward state every decoder block reads: attention mask, RoPE inputs, dropout keys.
// Owned arrays, because a checkpointed block is re-run after the forward pass has returned.
#pragma once

#include "handles.h"
#include "model/llama.h"

namespace mlxq::model {

struct Model::BlockContext {
  int batch = 0;
  int length = 0;
  const char* mask_mode = "causal";
  Array mask;
  /** cos/sin of each token's angles, [B, 1, L, head_dim/2], when positions are explicit. */
  Array cos;
  Array sin;
  /** RoPE start position when positions are implicit (the KV cache's length). */
  int offset = 0;
  /** One key per (layer, projection), rows of [num_layers·7, 2]; empty without dropout. */
  Array dropout_keys;
};

/** A decoder block run under mlx_checkpoint: its activations are recomputed in the backward pass. */
Array checkpointed_block(const Model& model, int index, const mlx_array h,
                         std::shared_ptr<const Model::BlockContext> ctx, const std::vector<mlx_array>* lora);

}  // namespace mlxq::model
