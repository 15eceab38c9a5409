#include "block_types.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <stdexcept>

#include "float_bits.h"

namespace mlxq::quant {
namespace {

constexpr BlockTypeInfo kTypes[] = {
    {BlockType::F32, "F32", 0, 1, 4},       {BlockType::F16, "F16", 1, 1, 2},
    {BlockType::BF16, "BF16", 30, 1, 2},    {BlockType::Q4_0, "Q4_0", 2, 32, 18},
    {BlockType::Q4_1, "Q4_1", 3, 32, 20},   {BlockType::Q5_0, "Q5_0", 6, 32, 22},
    {BlockType::Q5_1, "Q5_1", 7, 32, 24},   {BlockType::Q8_0, "Q8_0", 8, 32, 34},
    {BlockType::Q4_K, "Q4_K", 12, 256, 144}, {BlockType::Q5_K, "Q5_K", 13, 256, 176},
    {BlockType::Q6_K, "Q6_K", 14, 256, 210},
};

// Converted a few hundred at a time into an aligned buffer and copied out (GGUF is little-endian,
// like every target we build for), so the conversion loop vectorizes.
template <uint16_t (*Convert)(float)>
void encode_halves(const float* x, uint8_t* out, size_t n) {
  constexpr size_t kRun = 256;
  uint16_t halves[kRun];
  for (size_t start = 0; start < n; start += kRun) {
    const size_t m = std::min(kRun, n - start);
    for (size_t i = 0; i < m; ++i) halves[i] = Convert(x[start + i]);
    std::memcpy(out + 2 * start, halves, 2 * m);
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The F16C instruction rounds to nearest even as f32_to_f16 does, so for every finite float
// (the only ones encoded: NaN and infinity are refused first) it gives the same bits, eight at a
// time. Chosen at run time: the addon is built for baseline x86-64.
__attribute__((target("avx,f16c"))) void encode_f16_f16c(const float* x, uint8_t* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), h);
  }
  for (; i < n; ++i) store_u16(out + 2 * i, f32_to_f16(x[i]));
}

bool has_f16c() {
  static const bool yes = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return yes;
}
#endif

void encode_f16(const float* x, uint8_t* out, size_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (has_f16c()) return encode_f16_f16c(x, out, n);
#endif
  encode_halves<f32_to_f16>(x, out, n);
}

void encode_bf16(const float* x, uint8_t* out, size_t n) { encode_halves<f32_to_bf16>(x, out, n); }

/**
 * The first of n 2- or 4-byte floats whose exponent bits are all ones (NaN or infinity), or n:
 * whole runs are OR-reduced first, so the common all-finite case vectorizes.
 */
template <typename Bits>
size_t first_all_ones_exponent(const uint8_t* data, size_t n, Bits exponent) {
  constexpr size_t kRun = 256;
  Bits run[kRun];
  for (size_t start = 0; start < n; start += kRun) {
    const size_t m = std::min(kRun, n - start);
    std::memcpy(run, data + sizeof(Bits) * start, sizeof(Bits) * m);
    Bits any = 0;
    for (size_t i = 0; i < m; ++i) any |= static_cast<Bits>((run[i] & exponent) == exponent);
    if (!any) continue;
    for (size_t i = 0; i < m; ++i) {
      if ((run[i] & exponent) == exponent) return start + i;
    }
  }
  return n;
}

// Offsets of the half fields llama.cpp checks in each block (d, and m or dmin where there is one).
struct HalfFields {
  size_t first;
  size_t second;  // == first when the block has one
};

HalfFields half_fields(BlockType type) {
  switch (type) {
    case BlockType::Q4_1:
    case BlockType::Q5_1:
    case BlockType::Q4_K:
    case BlockType::Q5_K: return {0, 2};
    case BlockType::Q6_K: return {208, 208};
    default: return {0, 0};
  }
}

inline bool half_is_finite(uint16_t h) { return (h & 0x7C00u) != 0x7C00u; }

}  // namespace

size_t first_invalid_block(BlockType type, const uint8_t* data, size_t blocks) {
  switch (type) {
    case BlockType::F32: return first_all_ones_exponent<uint32_t>(data, blocks, 0x7F800000u);
    case BlockType::F16: return first_all_ones_exponent<uint16_t>(data, blocks, 0x7C00u);
    case BlockType::BF16: return first_all_ones_exponent<uint16_t>(data, blocks, 0x7F80u);
    default: break;
  }
  size_t bytes = 0;
  for (const auto& info : kTypes) {
    if (info.type == type) bytes = info.block_bytes;
  }
  const HalfFields at = half_fields(type);
  for (size_t i = 0; i < blocks; ++i) {
    const uint8_t* block = data + i * bytes;
    if (!half_is_finite(load_u16(block + at.first)) || !half_is_finite(load_u16(block + at.second))) return i;
  }
  return blocks;
}

const BlockTypeInfo& block_type_by_name(const std::string& name) {
  std::string upper = name;
  for (char& c : upper) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  std::string known;
  for (const auto& info : kTypes) {
    if (upper == info.name) return info;
    known += known.empty() ? "" : ", ";
    known += info.name;
  }
  throw std::invalid_argument("GGUF type '" + name + "' cannot be encoded (supported: " + known + ")");
}

size_t encoded_bytes(const BlockTypeInfo& info, size_t rows, size_t cols) {
  return rows * (cols / info.block_elements) * info.block_bytes;
}

void encode_values(BlockType type, const float* src, size_t count, uint8_t* dst) {
  switch (type) {
    case BlockType::F32: std::memcpy(dst, src, count * sizeof(float)); return;
    case BlockType::F16: encode_f16(src, dst, count); return;
    case BlockType::BF16: encode_bf16(src, dst, count); return;
    case BlockType::Q4_0: encode_q4_0(src, dst, count / 32); return;
    case BlockType::Q4_1: encode_q4_1(src, dst, count / 32); return;
    case BlockType::Q5_0: encode_q5_0(src, dst, count / 32); return;
    case BlockType::Q5_1: encode_q5_1(src, dst, count / 32); return;
    case BlockType::Q8_0: encode_q8_0(src, dst, count / 32); return;
    case BlockType::Q4_K: encode_q4_k(src, dst, count / 256); return;
    case BlockType::Q5_K: encode_q5_k(src, dst, count / 256); return;
    case BlockType::Q6_K: encode_q6_k(src, dst, count / 256); return;
  }
  throw std::logic_error("unhandled GGUF block type");
}

}  // namespace mlxq::quant
