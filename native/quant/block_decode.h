// GGUF tensor types read back to float32, with the values of ggml-quants.c `dequantize_row_*`
// (llama.cpp's type_traits to_float): every product and sum in ggml's order, rounded after each
// operation (no FMA contraction), so a decoded weight is the same float llama.cpp computes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mlxq::quant {

enum class DecodeType { F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K };

struct DecodeTypeInfo {
  DecodeType type;
  const char* name;  // ggml's upper-case name, as in lib/gguf/ggml-type.ts
  int ggml_id;
  size_t block_elements;
  size_t block_bytes;
};

/** Throws std::invalid_argument naming the type and the supported ones. */
const DecodeTypeInfo& decode_type_by_name(const std::string& name);

/** Decodes `blocks` whole blocks of `type` from `src` into `dst` (blocks × block_elements floats). */
void decode_blocks(DecodeType type, const uint8_t* src, size_t blocks, float* dst);

}  // namespace mlxq::quant
