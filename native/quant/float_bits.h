// Scalar conversions with ggml's exact results: half and bfloat16 encodings and ggml's
// round-half-to-even float → int, so our blocks carry the same bits as llama.cpp's.
#pragma once

#include <cstdint>
#include <cstring>

namespace mlxq::quant {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/**
 * IEEE binary16 of f, rounded to nearest even; a NaN becomes the quiet NaN 0x7E00 with its sign
 * (ggml's choice). Branch-free so that conversion loops vectorize.
 */
inline uint16_t f32_to_f16(float f) {
  const uint32_t u = bits_of(f);
  const int32_t a = static_cast<int32_t>(u & 0x7FFFFFFFu);
  // Normal halves: rebias the exponent and drop 13 mantissa bits, adding 0xFFF plus the kept lowest
  // bit first, which rounds to nearest even (a carry correctly moves into the exponent).
  const uint32_t ua = static_cast<uint32_t>(a);  // unsigned: the sum wraps harmlessly for NaN and infinity
  const int32_t normal = static_cast<int32_t>((ua + 0xFFFu + ((ua >> 13) & 1u) - 0x38000000u) >> 13);
  // Below 2^-14 the half unit is 2^-24, the float unit of numbers in [0.5, 1): adding 0.5 lets the
  // FPU round to it; the low bits are then the subnormal half.
  const int32_t subnormal = static_cast<int32_t>(bits_of(float_of(ua) + 0.5f) - 0x3F000000u);
  int32_t h = a < 0x38800000 ? subnormal : normal;
  h = a >= 0x477FF000 ? 0x7C00 : h;  // 65520 and above round to infinity
  h = a > 0x7F800000 ? 0x7E00 : h;
  return static_cast<uint16_t>(((u >> 16) & 0x8000u) | static_cast<uint32_t>(h));
}

/** The exact float value of a binary16. */
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * 0x1.0p-24f;  // exact: at most 10 significant bits
    return float_of(bits_of(magnitude) | sign);
  }
  if (exponent == 31) return float_of(sign | 0x7F800000u | (mantissa << 13));
  return float_of(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

/** bfloat16 of f, rounded to nearest even; a NaN keeps its top bits and is made quiet. */
inline uint16_t f32_to_bf16(float f) {
  const uint32_t u = bits_of(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 64u);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/**
 * ggml's nearest_int: adding 1.5·2^23 leaves round(f) (half to even) in the low mantissa bits.
 * Meant for |f| < 2^22, as in ggml; larger values give ggml's same wrapped result.
 */
inline int nearest_int(float f) {
  const float shifted = f + 12582912.f;
  const int32_t i = static_cast<int32_t>(bits_of(shifted));
  return (i & 0x007FFFFF) - 0x00400000;
}

inline void store_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xFFu);
  p[1] = static_cast<uint8_t>(v >> 8);
}

inline uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

}  // namespace mlxq::quant
