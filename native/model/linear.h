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

/**
 * Scales or biases of a quantized weight as the model should hold them, given in `given`'s dtype:
 * kept as they are when they are float16 or bfloat16 and activations are float32 (every use
 * widens them exactly, see dense_weight; a 4-bit g32 weight then costs 5 bits, not 6), otherwise
 * converted to `compute`.
 */
Array stored_quant_param(const mlx_array given, mlx_dtype compute);

/** y = x·Wᵀ (+ bias), with the kernel chosen for the backend. */
Array linear_base(const Linear& l, const mlx_array x, LinearKernel kernel);

/**
 * Whether linear_base (with the dequantize kernel) and dense_weight dequantize this weight block
 * by block: a quantized weight of more than two blocks (4M elements; a quarter of that at 3, 5 or
 * 6 bits, whose dequantization needs far more scratch).
 */
bool dequantizes_in_blocks(const Linear& l);

/**
 * The base weight as a dense [out, in] matrix in `dtype`, dequantized block by block into one
 * buffer when large. Scales and biases may be stored in a narrower dtype than `dtype` (float16
 * from GGUF); they are widened before dequantizing, so the values do not depend on it.
 */
Array dense_weight(const Linear& l, mlx_dtype dtype);

}  // namespace mlxq::model
