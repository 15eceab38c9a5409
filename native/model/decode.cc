// Generation's forward pass: a KV cache preallocated in steps and written in place, and logits of
// the last position only. Training's forward (forward.cc) never sees either.
#include <cmath>
#include <memory>
#include <optional>
#include <stdexcept>

#include "model/block_context.h"
#include "model/decode_gemv.h"
#include "mx.h"

namespace mlxq::model {

int SteppedKVCache::capacity() const { return keys.empty() || keys[0].empty() ? 0 : mx::dim(keys[0].get(), 2); }

namespace {

/** `buffer` ([B, H, cap, D]) with room for `end` positions: its first `keep` kept, the rest zero. */
Array grown(const Array& buffer, const mlx_array like, int keep, int end, int step) {
  auto s = mx::shape_of(like);
  const int capacity = (end + step - 1) / step * step;
  if (buffer.empty()) return mx::zeros({s[0], s[1], capacity, s[3]}, mx::dtype_of(like));
  Array kept = mx::slice(buffer.get(), {0, 0, 0, 0}, {s[0], s[1], keep, s[3]});
  Array room = mx::zeros({s[0], s[1], capacity - keep, s[3]}, mx::dtype_of(like));
  return mx::concatenate({kept.get(), room.get()}, 2);
}

/**
 * x · Wᵀ (+ bias) for a quantized weight by MLX's quantized_matmul, whatever the build's kernel:
 * for a few rows it reads the packed weight once, where dequantize + matmul (the CPU's choice
 * for training-sized batches) writes and reads a float copy of it (measured on the CPU at one
 * row: [1536, 512] 1.1 ms against 1.9 ms; the [32000, 512] LM head 37 ms against 368 ms, and at
 * eight rows 315 ms against 387 ms).
 */
Array one_row_quantized(const Linear& l, const mlx_array x) {
  QuantParams q = quant_params(l, mx::dtype_of(x));
  Array y = mx::quantized_matmul(x, l.w.get(), q.scales.get(), q.biases.get(), true, l.group_size, l.bits);
  return l.bias.empty() ? std::move(y) : mx::add(y.get(), l.bias.get());
}

/** Rows up to which the quantized LM head runs by quantized_matmul (see one_row_quantized). */
constexpr size_t kQuantizedHeadRows = 8;

/** RoPE with a start position per row (offsets: [B] int32), as mx::rope is with one for all. */
Array rope_rows(const mlx_array x, int dims, bool traditional, float scale, const mlx_array offsets,
                const mlx_array periods) {
  Array out;
  check(mlx_fast_rope_dynamic(out.out(), x, dims, traditional, mlx_optional_float{0.0f, false}, scale, offsets,
                              periods, mx::stream()),
        "mlx_fast_rope_dynamic");
  return out;
}

/**
 * [B, 1, l, total] boolean mask of queries at cache columns [offset, total) over keys [0, total):
 * causal, within the sliding window if any, and past each row's pad keys. A pad query sees itself
 * so that its (never read) attention output stays finite rather than a softmax over nothing.
 */
Array decode_mask(int offset, int l, int total, const std::vector<int>& pads, const std::optional<int>& window) {
  Array r = mx::reshape(mx::arange(offset, total, MLX_INT32).get(), {l, 1});
  Array c = mx::reshape(mx::arange(0, total, MLX_INT32).get(), {1, total});
  Array m = mx::less_equal(c.get(), r.get());
  if (window) {
    Array dist = mx::subtract(r.get(), c.get());
    m = mx::logical_and(m.get(), mx::less(dist.get(), mx::scalar_int(*window).get()).get());
  }
  if (pads.empty()) return m;
  const int b = static_cast<int>(pads.size());
  Array p = mx::from_data(pads.data(), {b, 1, 1, 1}, MLX_INT32);
  // Under the causal bound c <= r, "c >= pad or c == r" is c >= min(pad, r).
  Array first = mx::minimum(p.get(), r.get());
  Array visible = mx::greater_equal(c.get(), first.get());
  return mx::logical_and(m.get(), visible.get());
}

}  // namespace

std::pair<Array, Array> SteppedKVCache::update(int layer, const mlx_array k, const mlx_array v) {
  if (layer < 0 || layer >= static_cast<int>(keys.size())) throw std::runtime_error("KV cache: no such layer");
  if (step < 1) throw std::runtime_error("KV cache: the step must be at least 1");
  auto s = mx::shape_of(k);
  const int b = s[0], h = s[1], l = s[2], d = s[3];
  const int end = offset + l;
  Array& kb = keys[layer];
  Array& vb = values[layer];
  if (kb.empty() || mx::dim(kb.get(), 2) < end) {
    kb = grown(kb, k, offset, end, step);
    vb = grown(vb, v, offset, end, step);
  }
  kb = mx::slice_update(kb.get(), k, {0, 0, offset, 0}, {b, h, end, d});
  vb = mx::slice_update(vb.get(), v, {0, 0, offset, 0}, {b, h, end, d});
  return {mx::slice(kb.get(), {0, 0, 0, 0}, {b, h, end, d}), mx::slice(vb.get(), {0, 0, 0, 0}, {b, h, end, d})};
}

Array Model::decode_block(int index, const mlx_array h_in, const BlockContext& ctx, const mlx_array rope_offsets,
                          SteppedKVCache& cache, const std::vector<mlx_array>* lora) const {
  const Layer& layer = layers_[index];
  const int b = ctx.batch, l = ctx.length, hd = config_.head_dim;
  const int nh = config_.num_heads, nkv = config_.num_kv_heads;

  // A one-row step multiplies plain projections (no bias, no adapter) by gemv when dense (see
  // cpu_gemv) and by quantized_matmul when quantized (see one_row_quantized).
  auto project_row = [&](int p, const mlx_array in) -> Array {
    const Linear& lin = layer.proj[p];
    if (lin.bias.empty() && (lora == nullptr || lin.lora_index < 0) && b * l == 1) {
      if (!lin.quantized()) {
        if (auto y = cpu_gemv(in, lin.w.get())) return mx::reshape(y->get(), {b, l, mx::dim(lin.w.get(), 0)});
      } else {
        return one_row_quantized(lin, in);
      }
    }
    return project(layer, p, in, ctx, lora);
  };

  Array x = mx::rms_norm(h_in, layer.attn_norm.get(), config_.rms_norm_eps);
  Array q = project_row(Q, x.get());
  Array k = project_row(K, x.get());
  Array v = project_row(V, x.get());
  q = mx::transpose(mx::reshape(q.get(), {b, l, nh, hd}).get(), {0, 2, 1, 3});
  k = mx::transpose(mx::reshape(k.get(), {b, l, nkv, hd}).get(), {0, 2, 1, 3});
  v = mx::transpose(mx::reshape(v.get(), {b, l, nkv, hd}).get(), {0, 2, 1, 3});
  if (rope_offsets.ctx == nullptr) {
    q = apply_rope(q.get(), ctx);
    k = apply_rope(k.get(), ctx);
  } else {
    q = rope_rows(q.get(), hd, config_.rope_traditional, config_.rope_position_scale, rope_offsets, rope_periods_.get());
    k = rope_rows(k.get(), hd, config_.rope_traditional, config_.rope_position_scale, rope_offsets, rope_periods_.get());
  }
  auto [keys, values] = cache.update(index, k.get(), v.get());
  Array attn = mx::attention(q.get(), keys.get(), values.get(), 1.0f / std::sqrt(static_cast<float>(hd)),
                             ctx.mask_mode, ctx.mask.empty() ? mlx_array{} : ctx.mask.get());
  attn = mx::reshape(mx::transpose(attn.get(), {0, 2, 1, 3}).get(), {b, l, nh * hd});
  Array o = project_row(O, attn.get());
  Array h = mx::add(h_in, o.get());

  Array x2 = mx::rms_norm(h.get(), layer.mlp_norm.get(), config_.rms_norm_eps);
  Array g = project_row(GATE, x2.get());
  Array u = project_row(UP, x2.get());
  Array silu = mx::multiply(g.get(), mx::sigmoid(g.get()).get());
  Array act = mx::multiply(silu.get(), u.get());
  Array d = project_row(DOWN, act.get());
  return mx::add(h.get(), d.get());
}

Array Model::head_logits(const mlx_array h) const {
  const bool dense = config_.tie_word_embeddings || (!lm_head_.quantized() && lm_head_.bias.empty());
  if (dense) {
    if (auto y = cpu_gemv(h, config_.tie_word_embeddings ? embed_.get() : lm_head_.w.get())) return std::move(*y);
  }
  const size_t rows = mlx_array_size(h) / static_cast<size_t>(config_.hidden_size);
  if (!config_.tie_word_embeddings && lm_head_.quantized() && rows <= kQuantizedHeadRows) {
    return mx::astype(one_row_quantized(lm_head_, h).get(), MLX_FLOAT32);
  }
  Array out;
  if (config_.tie_word_embeddings) {
    Array et = mx::transpose(embed_.get(), {1, 0});
    out = mx::matmul(h, et.get());
  } else {
    out = linear_base(lm_head_, h, build_.kernel);
  }
  return mx::astype(out.get(), MLX_FLOAT32);
}

Array Model::decode_logits(const mlx_array tokens, SteppedKVCache& cache, const std::vector<mlx_array>* lora) const {
  return decode_logits(tokens, cache, std::vector<int>{}, lora);
}

Array Model::decode_logits(const mlx_array tokens, SteppedKVCache& cache, const std::vector<int>& pads,
                           const std::vector<mlx_array>* lora) const {
  if (!finalized_) throw std::runtime_error("the model is not finalized: load every weight first");
  auto shape = mx::shape_of(tokens);
  if (shape.size() != 2 || shape[1] < 1) throw std::runtime_error("tokens must be [batch, length]");
  if (!pads.empty() && static_cast<int>(pads.size()) != shape[0]) throw std::runtime_error("one pad count per row");
  BlockContext ctx;
  ctx.batch = shape[0];
  ctx.length = shape[1];
  ctx.offset = cache.offset;
  const int l = ctx.length, total = ctx.offset + l;
  bool padded = false;
  for (int p : pads) {
    if (p < 0 || p > cache.offset + l - 1) throw std::runtime_error("a row's pad count must leave it a real token");
    padded = padded || p > 0;
  }
  // The cache keeps every position; a sliding window hides the old ones by mask, as the training
  // forward does, so generation sees exactly what a full forward pass sees.
  const bool windowed = config_.sliding_window && total > *config_.sliding_window;
  if (windowed || padded) {
    ctx.mask = decode_mask(ctx.offset, l, total, padded ? pads : std::vector<int>{},
                           windowed ? config_.sliding_window : std::nullopt);
    ctx.mask_mode = "array";
  } else if (l == 1) {
    ctx.mask_mode = "";
  }
  // RoPE is relative, so one start for every row would give the same scores up to rounding; a
  // start per row gives a padded row exactly the rotations it has alone.
  Array rope_offsets;
  if (padded) {
    std::vector<int> starts;
    for (int p : pads) starts.push_back(ctx.offset - p);
    rope_offsets = mx::from_data(starts.data(), {ctx.batch}, MLX_INT32);
  }
  const bool use_lora = lora != nullptr && lora_enabled_ && !lora->empty();
  if (cache.keys.empty()) {
    cache.keys.resize(config_.num_layers);
    cache.values.resize(config_.num_layers);
  }
  Array h = embed_tokens(tokens);
  for (int i = 0; i < config_.num_layers; ++i) {
    h = decode_block(i, h.get(), ctx, rope_offsets.empty() ? mlx_array{} : rope_offsets.get(), cache,
                     use_lora ? lora : nullptr);
  }
  cache.offset = total;
  Array last = mx::slice(h.get(), {0, l - 1, 0}, {ctx.batch, l, config_.hidden_size});
  Array normed = mx::rms_norm(last.get(), final_norm_.get(), config_.rms_norm_eps);
  Array logits = head_logits(normed.get());
  return mx::reshape(logits.get(), {ctx.batch, config_.vocab_size});
}

}  // namespace mlxq::model
