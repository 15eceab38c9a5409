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
  // Dense [out, in], or quantized (w packed uint32, scales, biases [out, in/group]). A quantized
  // weight without biases is symmetric (Q4_0, Q8_0): its biases are −2^(bits−1)·scales, made at use.
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

struct QuantParams {
  Array scales, biases;
};

/** Scales and biases of a quantized weight in `dtype`, the biases made from the scales if implied. */
QuantParams quant_params(const Linear& l, mlx_dtype dtype);

/**
 * Forgets stored biases that equal −2^(bits−1)·scales exactly (checked in float32): a repacked
 * Q4_0 or Q8_0 weight then costs 4.5 or 8.5 bits a weight instead of 5 or 9, and every use
 * makes the same biases again.
 */
void drop_implied_biases(Linear& l);

/** Rows `rows` (any shape of int indices) of a quantized weight, dequantized: [...rows, in]. */
Array gather_dequantized_rows(const Linear& l, const mlx_array rows, mlx_dtype dtype);

/**
 * Rows [r0, r1) of a quantized weight, dense in `dtype`, made after `dependency` (if any); block by
 * block into one buffer when large, as dense_weight.
 */
Array dequantized_rows(const Linear& l, int r0, int r1, mlx_dtype dtype, const Array& dependency);

/**
 * Columns [c0, c1) (whole groups) of a quantized weight, dense [out, c1 − c0] in `dtype`, made
 * after `dependency` (if any).
 */
Array dequantized_cols(const Linear& l, int c0, int c1, mlx_dtype dtype, const Array& dependency);

/** A Linear whose arrays are new references to `l`'s (for closures that outlive the call). */
Linear linear_ref(const Linear& l);

/** Elements of one dequantized block at 2, 4 or 8 bits (2M; MLXQ_DEQUANT_BLOCK_ELEMENTS in tests). */
long dequantize_block_elements();

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
