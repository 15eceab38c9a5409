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

/**
 * Asymmetric fit x ≈ scale·L + min over one sub-block (ggml's make_qkx2_quants, use_mad false):
 * start from the min/max fit, then try nstep+1 inverse scales (rmin + rdelta·is + nmax)/(max−min)
 * and keep the lowest weighted squared error. `min` is kept ≤ 0; *neg_min receives −min.
 */
template <int n, int nmax>
float fit_scale_and_min(const float* x, const float* w, uint8_t* L, float* neg_min, uint8_t* Laux, float rmin,
                        float rdelta, int nstep) {
  float min = x[0];
  float max = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::memset(L, 0, n);
    *neg_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    const float diff = scale * L[i] + min - x[i];
    best_error += w[i] * (diff * diff);
  }
  // x − min as ggml computes it inside the loop; refreshed whenever a candidate moves min.
  float shifted[n];
  for (int i = 0; i < n; ++i) shifted[i] = x[i] - min;
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    int levels[n];
    for (int i = 0; i < n; ++i) levels[i] = std::max(0, std::min(nmax, nearest_int(iscale * shifted[i])));
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = levels[i];
      Laux[i] = static_cast<uint8_t>(l);
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (!(D > 0)) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * Laux[i] + this_min - x[i];
      error += w[i] * (diff * diff);
    }
    if (error < best_error) {
      std::memcpy(L, Laux, n);
      best_error = error;
      scale = this_scale;
      min = this_min;
      for (int i = 0; i < n; ++i) shifted[i] = x[i] - min;
    }
  }
  *neg_min = -min;
  return scale;
}

/**
 * Symmetric fit x ≈ scale·(L − nmax) over one sub-block with weights x² (ggml's make_qx_quants,
 * rmse_type 1): 19 candidate inverse scales −(nmax + 0.1·is)/max, the best Σlx²/Σl² wins.
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
  auto quant = [](float iscale, float v) { return std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * v))); };
  // The weights x² and the products x²·x, each rounded as ggml rounds them in every pass.
  float w[n], wx[n];
  for (int i = 0; i < n; ++i) {
    w[i] = x[i] * x[i];
    wx[i] = w[i] * x[i];
  }
  float iscale = -nmax / max;
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = quant(iscale, x[i]);
    L[i] = static_cast<int8_t>(l + nmax);
    sumlx += wx[i] * l;
    suml2 += w[i] * l * l;
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    int levels[n];
    for (int i = 0; i < n; ++i) levels[i] = quant(iscale, x[i]);
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      sumlx += wx[i] * levels[i];
      suml2 += w[i] * levels[i] * levels[i];
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + levels[i]);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
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
  float scales[8], mins[8], weights[32];
  uint8_t Laux[32];
  float max_scale = 0;
  float max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = fit_scale_and_min<32, nmax>(xs, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep);
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
