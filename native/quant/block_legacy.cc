// The 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), as llama.cpp's reference quantizers
// compute them: the same float operations in the same order, the same truncating conversions.
#include "no_fp_contract.h"

#include <cfloat>
#include <cmath>
#include <algorithm>

#include "block_types.h"
#include "float_bits.h"

namespace mlxq::quant {
namespace {

constexpr int kBlock = 32;

/** The value with the largest magnitude, sign kept; the first one wins a tie. */
float signed_absmax(const float* x) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < kBlock; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void min_max(const float* x, float& min, float& max) {
  min = FLT_MAX;
  max = -FLT_MAX;
  for (int j = 0; j < kBlock; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
}

// C's float → int8_t conversion as x86-64 compilers emit it: truncate to int, keep the low byte.
inline int truncate_to_int8(float v) { return static_cast<int8_t>(static_cast<int>(v)); }

inline float inverse_or_zero(float d) { return d != 0.0f ? 1.0f / d : 0.0f; }

/** Low 4 bits of element j and j+16 share byte j; the fifth bits go to a little-endian u32. */
void pack_5bit(const uint8_t* q, uint8_t* qh_out, uint8_t* qs_out) {
  uint32_t qh = 0;
  for (int j = 0; j < kBlock / 2; ++j) {
    qs_out[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    qh |= static_cast<uint32_t>((q[j] & 0x10u) >> 4) << j;
    qh |= static_cast<uint32_t>((q[j + 16] & 0x10u) >> 4) << (j + 16);
  }
  for (int b = 0; b < 4; ++b) qh_out[b] = static_cast<uint8_t>(qh >> (8 * b));
}

}  // namespace

// d:half, qs[16]: q = min(15, trunc(x/d + 8.5)) with d = -max/8 (max signed).
void encode_q4_0(const float* x, uint8_t* out, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += kBlock, out += 18) {
    const float d = signed_absmax(x) / -8;
    const float id = inverse_or_zero(d);
    store_u16(out, f32_to_f16(d));
    for (int j = 0; j < kBlock / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[j + 16] * id;
      const int q0 = std::min(15, truncate_to_int8(x0 + 8.5f));
      const int q1 = std::min(15, truncate_to_int8(x1 + 8.5f));
      out[2 + j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | static_cast<uint8_t>(q1 << 4));
    }
  }
}

// d:half, m:half, qs[16]: q = min(15, trunc((x - min)/d + 0.5)) with d = (max - min)/15.
void encode_q4_1(const float* x, uint8_t* out, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += kBlock, out += 20) {
    float min, max;
    min_max(x, min, max);
    const float d = (max - min) / 15;
    const float id = inverse_or_zero(d);
    store_u16(out, f32_to_f16(d));
    store_u16(out + 2, f32_to_f16(min));
    for (int j = 0; j < kBlock / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[j + 16] - min) * id;
      const int q0 = std::min(15, truncate_to_int8(x0 + 0.5f));
      const int q1 = std::min(15, truncate_to_int8(x1 + 0.5f));
      out[4 + j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | static_cast<uint8_t>(q1 << 4));
    }
  }
}

// d:half, qh:u32, qs[16]: q = min(31, trunc(x/d + 16.5)) with d = -max/16.
void encode_q5_0(const float* x, uint8_t* out, size_t blocks) {
  uint8_t q[kBlock];
  for (size_t b = 0; b < blocks; ++b, x += kBlock, out += 22) {
    const float d = signed_absmax(x) / -16;
    const float id = inverse_or_zero(d);
    store_u16(out, f32_to_f16(d));
    for (int j = 0; j < kBlock; ++j) q[j] = static_cast<uint8_t>(std::min(31, truncate_to_int8(x[j] * id + 16.5f)));
    pack_5bit(q, out + 2, out + 6);
  }
}

// d:half, m:half, qh:u32, qs[16]: q = trunc((x - min)/d + 0.5), unclamped, with d = (max - min)/31.
void encode_q5_1(const float* x, uint8_t* out, size_t blocks) {
  uint8_t q[kBlock];
  for (size_t b = 0; b < blocks; ++b, x += kBlock, out += 24) {
    float min, max;
    min_max(x, min, max);
    const float d = (max - min) / 31;
    const float id = inverse_or_zero(d);
    store_u16(out, f32_to_f16(d));
    store_u16(out + 2, f32_to_f16(min));
    for (int j = 0; j < kBlock; ++j) q[j] = static_cast<uint8_t>(static_cast<int>((x[j] - min) * id + 0.5f));
    pack_5bit(q, out + 4, out + 8);
  }
}

/**
 * The low byte of C's (int8_t)roundf(v) as x86-64 compilers emit it (roundf, then a truncating
 * conversion that gives INT_MIN for NaN, infinities and |v| ≥ 2^31), without the libm call, so the
 * loop vectorizes: truncate, then step away from zero when the dropped fraction is at least one
 * half. The fraction v − trunc(v) is exact, so ties go away from zero as roundf's do.
 */
inline uint8_t round_half_away_to_int8(float v) {
  const int t = static_cast<int>(v);
  const float frac = v - static_cast<float>(t);
  const int in_range = std::fabs(v) < 2147483648.f;
  const int step = in_range * ((frac >= 0.5f) - (frac <= -0.5f));
  return static_cast<uint8_t>(t + step);
}

// d:half, qs:i8[32]: q = roundf(x/d) (half away from zero) with d = max|x|/127.
void encode_q8_0(const float* x, uint8_t* out, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += kBlock, out += 34) {
    float amax = 0.0f;
    for (int j = 0; j < kBlock; ++j) amax = amax > std::fabs(x[j]) ? amax : std::fabs(x[j]);  // ggml's MAX
    const float d = amax / 127;
    const float id = inverse_or_zero(d);
    store_u16(out, f32_to_f16(d));
    for (int j = 0; j < kBlock; ++j) out[2 + j] = round_half_away_to_int8(x[j] * id);
  }
}

}  // namespace mlxq::quant
