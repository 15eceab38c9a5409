// Block decoders, one per GGUF type, each the float arithmetic of ggml's dequantize_row_* for that
// type in the same order (an int level times a float scale, minus a float min), so the results
// equal llama.cpp's bit for bit. Block layouts are ggml's structs, little-endian.
#include "no_fp_contract.h"

#include "block_decode.h"

#include <cstring>
#include <stdexcept>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "float_bits.h"

namespace mlxq::quant {
namespace {

constexpr DecodeTypeInfo kDecodeTypes[] = {
    {DecodeType::F32, "F32", 0, 1, 4},        {DecodeType::F16, "F16", 1, 1, 2},
    {DecodeType::BF16, "BF16", 30, 1, 2},     {DecodeType::Q4_0, "Q4_0", 2, 32, 18},
    {DecodeType::Q4_1, "Q4_1", 3, 32, 20},    {DecodeType::Q5_0, "Q5_0", 6, 32, 22},
    {DecodeType::Q5_1, "Q5_1", 7, 32, 24},    {DecodeType::Q8_0, "Q8_0", 8, 32, 34},
    {DecodeType::Q2_K, "Q2_K", 10, 256, 84},  {DecodeType::Q3_K, "Q3_K", 11, 256, 110},
    {DecodeType::Q4_K, "Q4_K", 12, 256, 144}, {DecodeType::Q5_K, "Q5_K", 13, 256, 176},
    {DecodeType::Q6_K, "Q6_K", 14, 256, 210},
};

inline float half_at(const uint8_t* p) { return f16_to_f32(load_u16(p)); }

void decode_f16_scalar(const uint8_t* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = f16_to_f32(load_u16(x + 2 * i));
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// F16C widens halves exactly, as f16_to_f32 does (a signalling NaN comes out quiet, and NaN is
// refused after decoding anyway), eight at a time. Chosen at run time: the addon targets baseline x86-64.
__attribute__((target("avx,f16c"))) void decode_f16_f16c(const uint8_t* x, float* y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 2 * i))));
  decode_f16_scalar(x + 2 * i, y + i, n - i);
}
#endif

void decode_f16(const uint8_t* x, float* y, size_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool f16c = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  if (f16c) return decode_f16_f16c(x, y, n);
#endif
  decode_f16_scalar(x, y, n);
}

void decode_bf16(const uint8_t* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = float_of(static_cast<uint32_t>(load_u16(x + 2 * i)) << 16);
}

// d, qs[16]: (q − 8)·d, low nibbles first.
void decode_q4_0(const uint8_t* x, float* y, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += 18, y += 32) {
    const float d = half_at(x);
    for (int j = 0; j < 16; ++j) {
      y[j] = ((x[2 + j] & 0x0F) - 8) * d;
      y[j + 16] = ((x[2 + j] >> 4) - 8) * d;
    }
  }
}

// d, m, qs[16]: q·d + m.
void decode_q4_1(const uint8_t* x, float* y, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += 20, y += 32) {
    const float d = half_at(x);
    const float m = half_at(x + 2);
    for (int j = 0; j < 16; ++j) {
      y[j] = (x[4 + j] & 0x0F) * d + m;
      y[j + 16] = (x[4 + j] >> 4) * d + m;
    }
  }
}

inline uint32_t load_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

// d, qh:u32, qs[16]: (q − 16)·d, the fifth bits of value j and j+16 in qh bits j and j+16.
void decode_q5_0(const uint8_t* x, float* y, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += 22, y += 32) {
    const float d = half_at(x);
    const uint32_t qh = load_u32(x + 2);
    for (int j = 0; j < 16; ++j) {
      const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
      const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      y[j] = (((x[6 + j] & 0x0F) | h0) - 16) * d;
      y[j + 16] = (((x[6 + j] >> 4) | h1) - 16) * d;
    }
  }
}

// d, m, qh:u32, qs[16]: q·d + m.
void decode_q5_1(const uint8_t* x, float* y, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += 24, y += 32) {
    const float d = half_at(x);
    const float m = half_at(x + 2);
    const uint32_t qh = load_u32(x + 4);
    for (int j = 0; j < 16; ++j) {
      const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
      const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      y[j] = ((x[8 + j] & 0x0F) | h0) * d + m;
      y[j + 16] = ((x[8 + j] >> 4) | h1) * d + m;
    }
  }
}

// d, qs:i8[32]: q·d.
void decode_q8_0(const uint8_t* x, float* y, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += 34, y += 32) {
    const float d = half_at(x);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<int8_t>(x[2 + j]) * d;
  }
}

// scales[16] (4-bit scale, 4-bit min), qs[64] (2-bit), d, dmin: (d·sc)·q − dmin·m.
void decode_q2_k(const uint8_t* x, float* y, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += 84) {
    const uint8_t* scales = x;
    const uint8_t* q = x + 16;
    const float d = half_at(x + 80);
    const float min = half_at(x + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = scales[is++];
          const float dl = d * (sc & 0xF);
          const float ml = min * (sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
        }
      }
    }
  }
}

/** Q3_K's sixteen 6-bit scales, unpacked from 12 bytes as ggml's kmask shuffle does. */
void q3_k_scales(const uint8_t* packed, int8_t* out) {
  uint32_t aux[4];
  std::memcpy(aux, packed, 12);
  const uint32_t kmask1 = 0x03030303u, kmask2 = 0x0f0f0f0fu;
  const uint32_t tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  std::memcpy(out, aux, 16);
}

// hmask[32], qs[64], scales[12], d: (d·(sc − 32))·(q − (high bit clear ? 4 : 0)).
void decode_q3_k(const uint8_t* x, float* y, size_t blocks) {
  int8_t scales[16];
  for (size_t b = 0; b < blocks; ++b, x += 110) {
    const uint8_t* hm = x;
    const uint8_t* q = x + 32;
    q3_k_scales(x + 96, scales);
    const float d_all = half_at(x + 108);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < 256; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * (scales[is++] - 32);
          const int o = 16 * half;
          for (int l = 0; l < 16; ++l) *y++ = dl * (((q[l + o] >> shift) & 3) - ((hm[l + o] & m) ? 0 : 4));
        }
      }
    }
  }
}

/** Scale and min j of a Q4_K/Q5_K block's 12 packed bytes (ggml's get_scale_min_k4). */
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// d, dmin, scales[12], qs[128]: (d·sc)·q − dmin·m per 32 values; low nibbles then high.
void decode_q4_k(const uint8_t* x, float* y, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += 144) {
    const float d = half_at(x);
    const float min = half_at(x + 2);
    const uint8_t* q = x + 16;
    for (int is = 0; is < 8; is += 2, q += 32) {
      uint8_t sc, m;
      scale_min_k4(is, x + 4, sc, m);
      const float d1 = d * sc, m1 = min * m;
      scale_min_k4(is + 1, x + 4, sc, m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

// d, dmin, scales[12], qh[32], qs[128]: as Q4_K with a fifth bit (+16) from qh.
void decode_q5_k(const uint8_t* x, float* y, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += 176) {
    const float d = half_at(x);
    const float min = half_at(x + 2);
    const uint8_t* qh = x + 16;
    const uint8_t* ql = x + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32) {
      uint8_t sc, m;
      scale_min_k4(is, x + 4, sc, m);
      const float d1 = d * sc, m1 = min * m;
      scale_min_k4(is + 1, x + 4, sc, m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = static_cast<uint8_t>(u1 << 2);
      u2 = static_cast<uint8_t>(u2 << 2);
    }
  }
}

// ql[128], qh[64], scales:i8[16], d: (d·sc)·(q − 32), four interleaved quarters per 128 values.
void decode_q6_k(const uint8_t* x, float* y, size_t blocks) {
  for (size_t b = 0; b < blocks; ++b, x += 210) {
    const float d = half_at(x + 208);
    const uint8_t* ql = x;
    const uint8_t* qh = x + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(x + 192);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = static_cast<int8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = static_cast<int8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

}  // namespace

const DecodeTypeInfo& decode_type_by_name(const std::string& name) {
  std::string upper = name;
  for (char& c : upper) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  std::string known;
  for (const auto& info : kDecodeTypes) {
    if (upper == info.name) return info;
    known += known.empty() ? "" : ", ";
    known += info.name;
  }
  throw std::invalid_argument("GGUF type '" + name + "' cannot be decoded (supported: " + known + ")");
}

void decode_blocks(DecodeType type, const uint8_t* src, size_t blocks, float* dst) {
  switch (type) {
    case DecodeType::F32: std::memcpy(dst, src, blocks * sizeof(float)); return;
    case DecodeType::F16: decode_f16(src, dst, blocks); return;
    case DecodeType::BF16: decode_bf16(src, dst, blocks); return;
    case DecodeType::Q4_0: decode_q4_0(src, dst, blocks); return;
    case DecodeType::Q4_1: decode_q4_1(src, dst, blocks); return;
    case DecodeType::Q5_0: decode_q5_0(src, dst, blocks); return;
    case DecodeType::Q5_1: decode_q5_1(src, dst, blocks); return;
    case DecodeType::Q8_0: decode_q8_0(src, dst, blocks); return;
    case DecodeType::Q2_K: decode_q2_k(src, dst, blocks); return;
    case DecodeType::Q3_K: decode_q3_k(src, dst, blocks); return;
    case DecodeType::Q4_K: decode_q4_k(src, dst, blocks); return;
    case DecodeType::Q5_K: decode_q5_k(src, dst, blocks); return;
    case DecodeType::Q6_K: decode_q6_k(src, dst, blocks); return;
  }
  throw std::logic_error("unhandled GGUF decode type");
}

}  // namespace mlxq::quant
