// One projection of the base model: frozen (dense or MLX-affine-quantized) weight, optional bias,
// and optionally a LoRA adapter whose A/B live in the model's trainable parameter list.
#pragma once

#include <string>

#include "handles.h"
#include "model/config.h"

namespace mlxq::model {

struct Linear {
  int in = 0;
  int out = 0;
  // Dense [out, in], or quantized (w packed uint32, scales, biases [out, in/group]).
  Array w;
  Array scales;
  Array biases;
  int bits = 0;  // 0: dense
  int group_size = 0;
  Array bias;  // [out], optional
  /** Index of this projection's A in the trainable list (B follows it); -1 without LoRA. */
  int lora_index = -1;

  bool loaded() const { return !w.empty(); }
  bool quantized() const { return bits != 0; }
};

/** y = x·Wᵀ (+ bias), with the kernel chosen for the backend. */
Array linear_base(const Linear& l, const mlx_array x, LinearKernel kernel);

/** The base weight as a dense [out, in] matrix in `dtype`. */
Array dense_weight(const Linear& l, mlx_dtype dtype);

}  // namespace mlxq::model
