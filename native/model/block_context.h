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

}  // namespace mlxq::model
