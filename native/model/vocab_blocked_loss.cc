#include "model/vocab_blocked_loss.h"

#include <algorithm>

#include "mx.h"

namespace mlxq::model {
namespace {

/**
 * Head rows a block: its logits near two dequantization blocks (4M elements), its dense rows at
 * most eight (16M: 64 MB at 7B, where 4096 rows make eight blocks of the 32000-row vocabulary).
 */
int rows_per_block(int tokens, int dim, int vocab) {
  const long unit = dequantize_block_elements();
  const long by_logits = std::max(1L, 2 * unit / std::max(1, tokens));
  const long by_weight = std::max(1L, 8 * unit / std::max(1, dim));
  return static_cast<int>(std::min({by_logits, by_weight, static_cast<long>(vocab)}));
}

struct Block {
  Array w;  // dense head rows [rows, D] in h's dtype
  Array z;  // float32 logits [N, rows]
};

Block block_logits(const Linear& head, const mlx_array h, int r0, int r1, const Array& dependency) {
  Array w = dequantized_rows(head, r0, r1, mx::dtype_of(h), dependency);
  Array wt = mx::transpose(w.get(), {1, 0});
  Array z = mx::matmul(h, wt.get());
  if (!head.bias.empty()) {
    Array b = mx::slice(head.bias.get(), {r0}, {r1});
    z = mx::add(z.get(), b.get());
  }
  return {std::move(w), mx::astype(z.get(), MLX_FLOAT32)};
}

/**
 * Per row over the blocks seen so far: the largest logit, Σ exp(z − max), and with the gradient
 * Σ exp(z − max)·W (float32 [N, D]).
 */
struct Running {
  Array max, total, weighted;
};

void fold_block(Running& r, const Block& b, bool gradient) {
  Array block_max = mx::max_axis(b.z.get(), -1, true);
  const bool first = r.max.empty();
  Array m = first ? std::move(block_max) : mx::maximum(r.max.get(), block_max.get());
  Array shifted = mx::subtract(b.z.get(), m.get());
  Array e = mx::exp(shifted.get());
  Array part = mx::sum_axis(e.get(), -1, true);
  Array weighted_part;
  if (gradient) {
    Array e_c = mx::astype(e.get(), mx::dtype_of(b.w.get()));
    Array product = mx::matmul(e_c.get(), b.w.get());
    weighted_part = mx::astype(product.get(), MLX_FLOAT32);
  }
  if (first) {
    r.total = std::move(part);
    r.weighted = std::move(weighted_part);
  } else {
    Array drop = mx::subtract(r.max.get(), m.get());
    Array rescale = mx::exp(drop.get());
    Array kept = mx::multiply(r.total.get(), rescale.get());
    r.total = mx::add(kept.get(), part.get());
    if (gradient) {
      Array kept_w = mx::multiply(r.weighted.get(), rescale.get());
      r.weighted = mx::add(kept_w.get(), weighted_part.get());
    }
  }
  r.max = std::move(m);
}

/** z[target] per row, float32 [N], from the target rows of W gathered and dequantized. */
Array target_logits(const Linear& head, const mlx_array h, const Array& target_rows, const mlx_array targets) {
  Array h32 = mx::astype(h, MLX_FLOAT32);
  Array w32 = mx::astype(target_rows.get(), MLX_FLOAT32);
  Array product = mx::multiply(h32.get(), w32.get());
  Array z = mx::sum_axis(product.get(), -1, false);
  if (head.bias.empty()) return z;
  Array b = mx::take_axis(head.bias.get(), targets, 0);
  Array b32 = mx::astype(b.get(), MLX_FLOAT32);
  return mx::add(z.get(), b32.get());
}

}  // namespace

HeadLoss vocab_blocked_cross_entropy(const Linear& head, const mlx_array h, const mlx_array targets,
                                     const mlx_array mask, bool gradient) {
  const int n = mx::dim(h, 0), d = mx::dim(h, 1);
  const int rows = rows_per_block(n, d, head.out);
  Running r;
  for (int r0 = 0; r0 < head.out; r0 += rows) {
    // Each block waits for the previous one's fold: scheduled breadth-first, every block's
    // dequantized rows and logits would otherwise exist at once.
    const Array& previous = gradient ? r.weighted : r.total;
    Block b = block_logits(head, h, r0, std::min(head.out, r0 + rows), previous);
    fold_block(r, b, gradient);
  }
  Array log_total = mx::log(r.total.get());
  Array lse = mx::add(r.max.get(), log_total.get());
  Array lse_row = mx::squeeze(lse.get(), -1);
  Array target_rows = gather_dequantized_rows(head, targets, mx::dtype_of(h));
  Array picked = target_logits(head, h, target_rows, targets);
  Array ce = mx::subtract(lse_row.get(), picked.get());
  Array masked = mx::multiply(ce.get(), mask);
  HeadLoss out{mx::sum(masked.get()), Array()};
  if (!gradient) return out;
  // d CE / d h = softmax(z)·W − W[target], each row scaled by its mask weight.
  Array softmax_w = mx::divide(r.weighted.get(), r.total.get());
  Array w32 = mx::astype(target_rows.get(), MLX_FLOAT32);
  Array diff = mx::subtract(softmax_w.get(), w32.get());
  Array weight = mx::expand_dims(mask, -1);
  Array dh = mx::multiply(diff.get(), weight.get());
  out.dh = mx::astype(dh.get(), mx::dtype_of(h));
  return out;
}

}  // namespace mlxq::model
