// The 256-value super-block types (Q4_K, Q5_K, Q6_K), as llama.cpp's reference quantizers compute
// them without an importance matrix: per sub-block a weighted least-squares search for scale (and
// min), 6- or 8-bit sub-block scales under a half super-scale, then requantization with the
// rounded scales. Each float operation keeps ggml's order, since the bits must match.
#include "no_fp_contract.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "block_types.h"
#include "float_bits.h"

namespace mlxq::quant {
namespace {

constexpr int kSuper = 256;
constexpr float kGroupMaxEps = 1e-15f;

// Four floats or ints in one SIMD register (SSE, NEON), through the GCC/Clang vector extension.
typedef float Float4 __attribute__((vector_size(16)));
typedef int32_t Int4 __attribute__((vector_size(16)));

/** ggml's nearest_int in each lane, clamped to [lo, hi]: the scalar steps, lane by lane. */
inline Int4 nearest_int_clamped(Float4 v, int lo, int hi) {
  const Float4 shifted = v + 12582912.f;
  Int4 l = ((Int4)shifted & 0x007FFFFF) - 0x00400000;  // a bit cast between vectors of one size
  const Int4 below = l < lo;
  l = (below & lo) | (~below & l);
  const Int4 above = l > hi;
  return (above & hi) | (~above & l);
}

/** The inverse scale ggml tries at step `is` of make_qx_quants: −(nmax + 0.1·is)/max. */
template <int nmax>
inline float candidate_iscale(int is, float max) {
  return -(nmax + 0.1f * is) / max;
}

/**
 * Symmetric fit x ≈ scale·(L − nmax) over one sub-block with weights x² (ggml's make_qx_quants,
 * rmse_type 1): 19 candidate inverse scales −(nmax + 0.1·is)/max, the best Σlx²/Σl² wins. The
 * candidates do not depend on each other, so their sums run four to a SIMD register, each lane
 * adding in ggml's order (the same bits); the choice then scans them in ggml's order.
 */
template <int n, int nmax>
float fit_symmetric_scale(const float* x, int8_t* L) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::memset(L, 0, n);
    return 0.0f;
  }
  constexpr int kVectors = 5;  // candidates is = −9 … 9 in lanes 0 … 18; lane 19 repeats is = 9
  Float4 iscale[kVectors], sumlx[kVectors], suml2[kVectors];
  for (int v = 0; v < kVectors; ++v) {
    for (int lane = 0; lane < 4; ++lane) iscale[v][lane] = candidate_iscale<nmax>(std::min(4 * v + lane - 9, 9), max);
    sumlx[v] = Float4{0, 0, 0, 0};
    suml2[v] = Float4{0, 0, 0, 0};
  }
  for (int i = 0; i < n; ++i) {
    // The weight x² and the product x²·x, each rounded as ggml rounds them.
    const float w = x[i] * x[i];
    const float wx = w * x[i];
    for (int v = 0; v < kVectors; ++v) {
      const Float4 l = __builtin_convertvector(nearest_int_clamped(iscale[v] * x[i], -nmax, nmax - 1), Float4);
      sumlx[v] += wx * l;
      suml2[v] += (w * l) * l;
    }
  }
  float lx[4 * kVectors], l2[4 * kVectors];
  std::memcpy(lx, sumlx, sizeof lx);
  std::memcpy(l2, suml2, sizeof l2);
  // is = 0 is ggml's first fit (its −nmax/max is the same float); the others may replace it in order.
  float scale = l2[9] != 0 ? lx[9] / l2[9] : 0.0f;
  float best = scale * lx[9];
  int chosen = 0;
  for (int is = -9; is <= 9; ++is) {
    const int c = is + 9;
    if (is == 0 || !(l2[c] > 0 && lx[c] * lx[c] > best * l2[c])) continue;
    chosen = is;
    scale = lx[c] / l2[c];
    best = scale * lx[c];
  }
  const float chosen_iscale = candidate_iscale<nmax>(chosen, max);
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, nearest_int(chosen_iscale * x[i]))));
  }
  return scale;
}

inline Float4 select4(Int4 mask, Float4 a, Float4 b) { return (Float4)((mask & (Int4)a) | (~mask & (Int4)b)); }
inline Int4 select4(Int4 mask, Int4 a, Int4 b) { return (mask & a) | (~mask & b); }
inline Float4 abs4(Float4 v) { return (Float4)((Int4)v & 0x7FFFFFFF); }
inline bool any4(Int4 mask) { return (mask[0] | mask[1] | mask[2] | mask[3]) != 0; }

/** Four sub-blocks of 32 values side by side: lane j of value i is x[32·j + i]. */
struct Lanes32 {
  Float4 x[32];
  Float4 w[32];
};

/**
 * Asymmetric fit x ≈ scale·L + min (ggml's make_qkx2_quants, use_mad false) of four sub-blocks at
 * once, one per SIMD lane, each lane doing ggml's scalar steps in ggml's order: start from the
 * min/max fit, then try nstep+1 inverse scales (rmin + rdelta·is + nmax)/(max−min) and keep the
 * lowest weighted squared error. A branch of the scalar code is a per-lane select here; a better
 * candidate moves that lane's min, which the next candidates then start from. `min` is kept ≤ 0;
 * neg_min receives −min, L the levels (lane j of L[i] for value i of sub-block j).
 */
template <int nmax>
void fit_scale_and_min4(const Lanes32& in, Int4* L, Float4& scale_out, Float4& neg_min, float rmin, float rdelta, int nstep) {
  constexpr int n = 32;
  const Float4* x = in.x;
  const Float4* w = in.w;
  Float4 min = x[0], max = x[0], sum_w = w[0];
  Float4 sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = select4(x[i] < min, x[i], min);
    max = select4(x[i] > max, x[i], max);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  const Float4 zero = {0, 0, 0, 0};
  min = select4(min > 0.0f, zero, min);
  const Int4 flat = max == min;  // ggml returns at once: levels 0, scale 0
  Float4 iscale = static_cast<float>(nmax) / (max - min);
  Float4 scale = 1.0f / iscale;
  Float4 best_error = zero;
  for (int i = 0; i < n; ++i) {
    L[i] = nearest_int_clamped(iscale * (x[i] - min), 0, nmax);
    const Float4 diff = scale * __builtin_convertvector(L[i], Float4) + min - x[i];
    best_error += w[i] * (diff * diff);
  }
  Float4 shifted[n];
  for (int i = 0; i < n; ++i) shifted[i] = x[i] - min;
  for (int is = 0; is <= nstep; ++is) {
    const float numerator = rmin + rdelta * is + nmax;  // all in float, as ggml's expression
    iscale = numerator / (max - min);
    Float4 levels[n];
    Float4 sum_l = zero, sum_l2 = zero, sum_xl = zero;
    for (int i = 0; i < n; ++i) {
      const Float4 l = __builtin_convertvector(nearest_int_clamped(iscale * shifted[i], 0, nmax), Float4);
      levels[i] = l;
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const Float4 D = sum_w * sum_l2 - sum_l * sum_l;
    Float4 this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    Float4 this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    const Int4 positive_min = this_min > 0.0f;
    this_min = select4(positive_min, zero, this_min);
    this_scale = select4(positive_min, sum_xl / sum_l2, this_scale);
    Float4 error = zero;
    for (int i = 0; i < n; ++i) {
      const Float4 diff = this_scale * levels[i] + this_min - x[i];
      error += w[i] * (diff * diff);
    }
    const Int4 better = (D > 0.0f) & (error < best_error) & ~flat;
    if (!any4(better)) continue;
    for (int i = 0; i < n; ++i) L[i] = select4(better, __builtin_convertvector(levels[i], Int4), L[i]);
    best_error = select4(better, error, best_error);
    scale = select4(better, this_scale, scale);
    min = select4(better, this_min, min);
    for (int i = 0; i < n; ++i) shifted[i] = select4(better, x[i] - min, shifted[i]);
  }
  const Int4 zeros = {0, 0, 0, 0};
  for (int i = 0; i < n; ++i) L[i] = select4(flat, zeros, L[i]);
  scale_out = select4(flat, zero, scale);
  neg_min = -min;
}

/** Sub-blocks first … first+3 of a super-block in lanes, with ggml's weights av_x + |x|. */
void load_lanes(const float* x, int first, Lanes32& lanes) {
  for (int i = 0; i < 32; ++i) {
    for (int lane = 0; lane < 4; ++lane) lanes.x[i][lane] = x[32 * (first + lane) + i];
  }
  Float4 sum_x2 = {0, 0, 0, 0};
  for (int i = 0; i < 32; ++i) sum_x2 += lanes.x[i] * lanes.x[i];
  Float4 av_x;
  for (int lane = 0; lane < 4; ++lane) av_x[lane] = std::sqrt(sum_x2[lane] / 32);
  for (int i = 0; i < 32; ++i) lanes.w[i] = av_x + abs4(lanes.x[i]);
}

/** Eight 6-bit scales and mins in 12 bytes (ggml's get_scale_min_k4 reads them back). */
void pack_scales_and_mins(const uint8_t* ls, const uint8_t* lm, uint8_t* scales) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] = ls[j];
      scales[j + 4] = lm[j];
    } else {
      scales[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      scales[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      scales[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

/**
 * Q4_K and Q5_K share everything but nmax and the search range: writes d, dmin and the 12 scale
 * bytes at `head`, and the final levels (0..nmax) of the 256 values to L.
 */
template <int nmax>
void quantize_scale_min_superblock(const float* x, float rmin, float rdelta, int nstep, uint8_t* head, uint8_t* L) {
  float scales[8], mins[8];
  for (int first = 0; first < 8; first += 4) {
    Lanes32 lanes;
    load_lanes(x, first, lanes);
    Int4 levels[32];
    Float4 scale, neg_min;
    fit_scale_and_min4<nmax>(lanes, levels, scale, neg_min, rmin, rdelta, nstep);
    for (int lane = 0; lane < 4; ++lane) {
      scales[first + lane] = scale[lane];
      mins[first + lane] = neg_min[lane];
      for (int i = 0; i < 32; ++i) L[32 * (first + lane) + i] = static_cast<uint8_t>(levels[i][lane]);
    }
  }
  float max_scale = 0;
  float max_min = 0;
  for (int j = 0; j < 8; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t ls[8], lm[8];
  for (int j = 0; j < 8; ++j) {
    // ggml stores nearest_int's result in a uint8_t before clamping; the same wrap here.
    ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
  }
  const uint16_t d16 = f32_to_f16(max_scale / 63.f);
  const uint16_t dmin16 = f32_to_f16(max_min / 63.f);
  store_u16(head, d16);
  store_u16(head + 2, dmin16);
  pack_scales_and_mins(ls, lm, head + 4);
  for (int j = 0; j < 8; ++j) {
    const float d = f16_to_f32(d16) * ls[j];
    if (!d) continue;  // a zero scale keeps the search's levels, as in ggml
    const float dm = f16_to_f32(dmin16) * lm[j];
    for (int i = 0; i < 32; ++i) {
      const int l = nearest_int((x[32 * j + i] + dm) / d);
      L[32 * j + i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

}  // namespace

// d:half, dmin:half, scales[12], qs[128]: x ≈ d·sc·q − dmin·m over 8 sub-blocks of 32.
void encode_q4_k(const float* x, uint8_t* out, size_t blocks) {
  uint8_t L[kSuper];
  for (size_t b = 0; b < blocks; ++b, x += kSuper, out += 144) {
    quantize_scale_min_superblock<15>(x, -1.f, 0.1f, 20, out, L);
    uint8_t* q = out + 16;
    for (int j = 0; j < kSuper; j += 64, q += 32) {
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
  }
}

// d:half, dmin:half, scales[12], qh[32], qs[128]: as Q4_K with 5-bit levels, the fifth bits in qh.
void encode_q5_k(const float* x, uint8_t* out, size_t blocks) {
  uint8_t L[kSuper];
  for (size_t b = 0; b < blocks; ++b, x += kSuper, out += 176) {
    quantize_scale_min_superblock<31>(x, -0.5f, 0.1f, 15, out, L);
    uint8_t* qh = out + 16;
    uint8_t* ql = out + 48;
    std::memset(qh, 0, 32);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < kSuper; n += 64, ql += 32) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[n + j];
        if (l1 > 15) {
          l1 -= 16;
          qh[j] |= m1;
        }
        int l2 = L[n + j + 32];
        if (l2 > 15) {
          l2 -= 16;
          qh[j] |= m2;
        }
        ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
      m1 = static_cast<uint8_t>(m1 << 2);
      m2 = static_cast<uint8_t>(m2 << 2);
    }
  }
}

// ql[128], qh[64], scales:i8[16], d:half: x ≈ d·sc·(q − 32) over 16 sub-blocks of 16.
void encode_q6_k(const float* x, uint8_t* out, size_t blocks) {
  int8_t L[kSuper];
  float scales[16];
  for (size_t b = 0; b < blocks; ++b, x += kSuper, out += 210) {
    float max_scale = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
      scales[ib] = fit_symmetric_scale<16, 32>(x + 16 * ib, L + 16 * ib);
      const float abs_scale = std::fabs(scales[ib]);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scales[ib];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(out, 0, 210);
      continue;
    }
    const float iscale = -128.f / max_scale;
    const uint16_t d16 = f32_to_f16(1 / iscale);
    int8_t* sc = reinterpret_cast<int8_t*>(out + 192);
    for (int ib = 0; ib < 16; ++ib) sc[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    store_u16(out + 208, d16);
    for (int j = 0; j < 16; ++j) {
      const float d = f16_to_f32(d16) * sc[j];
      if (!d) continue;
      for (int i = 0; i < 16; ++i) {
        const int l = std::max(-32, std::min(31, nearest_int(x[16 * j + i] / d)));
        L[16 * j + i] = static_cast<int8_t>(l + 32);
      }
    }
    uint8_t* ql = out;
    uint8_t* qh = out + 128;
    for (int j = 0; j < kSuper; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const int a = L[j + l], b2 = L[j + l + 32], c = L[j + l + 64], e = L[j + l + 96];
        ql[l] = static_cast<uint8_t>((a & 0xF) | ((c & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((b2 & 0xF) | ((e & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((a >> 4) | ((b2 >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6));
      }
    }
  }
}

}  // namespace mlxq::quant
