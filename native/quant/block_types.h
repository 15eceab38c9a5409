// The GGUF tensor types we write, with their ggml block geometry, and the row encoders.
//
// Every quantized type follows llama.cpp's reference quantizer (ggml-quants.c `quantize_row_*_ref`,
// what llama_model_quantize uses without an importance matrix) operation for operation, in float,
// so that our bytes equal llama.cpp's. The files here must not be compiled with FMA contraction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mlxq::quant {

enum class BlockType { F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K };

struct BlockTypeInfo {
  BlockType type;
  const char* name;  // ggml's upper-case name, as in lib/gguf/ggml-type.ts
  int ggml_id;
  size_t block_elements;
  size_t block_bytes;
};

/** Throws std::invalid_argument naming the type and the supported ones. */
const BlockTypeInfo& block_type_by_name(const std::string& name);

/** Bytes of `rows` rows of `cols` values; cols must be a multiple of the block size. */
size_t encoded_bytes(const BlockTypeInfo& info, size_t rows, size_t cols);

/**
 * Encodes `count` values (a multiple of the block size) starting at `src` into `dst`. Blocks are
 * independent, so any run of whole rows can be encoded on its own (that is how threads split work).
 */
void encode_values(BlockType type, const float* src, size_t count, uint8_t* dst);

/**
 * The first of `blocks` encoded blocks that llama.cpp's ggml_validate_row_data refuses (a NaN or
 * infinite value, or a half scale or min that overflowed), or `blocks` if all are valid.
 */
size_t first_invalid_block(BlockType type, const uint8_t* data, size_t blocks);

// The block encoders, `blocks` consecutive blocks each (block_legacy.cc, block_k.cc).
void encode_q4_0(const float* x, uint8_t* out, size_t blocks);
void encode_q4_1(const float* x, uint8_t* out, size_t blocks);
void encode_q5_0(const float* x, uint8_t* out, size_t blocks);
void encode_q5_1(const float* x, uint8_t* out, size_t blocks);
void encode_q8_0(const float* x, uint8_t* out, size_t blocks);
void encode_q4_k(const float* x, uint8_t* out, size_t blocks);
void encode_q5_k(const float* x, uint8_t* out, size_t blocks);
void encode_q6_k(const float* x, uint8_t* out, size_t blocks);

}  // namespace mlxq::quant
