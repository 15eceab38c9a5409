// The decoder's forward pass and loss.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "model/block_context.h"
#include "model/blocked_mlp.h"
#include "model/checkpoint.h"
#include "model/chunked_loss.h"
#include "model/cross_entropy.h"
#include "model/fused_attention.h"
#include "model/phase_probe.h"
#include "mx.h"

namespace mlxq::model {
namespace {

/** [rows, 1] and [1, cols] int32 index grids. */
std::pair<Array, Array> index_grid(int row_start, int rows, int cols) {
  Array r = mx::arange(row_start, row_start + rows, MLX_INT32);
  Array c = mx::arange(0, cols, MLX_INT32);
  return {mx::reshape(r.get(), {rows, 1}), mx::reshape(c.get(), {1, cols})};
}

}  // namespace

Array Model::apply_rope(const mlx_array x, const BlockContext& ctx) const {
  const int hd = config_.head_dim;
  if (ctx.cos.empty()) {
    return mx::rope(x, hd, config_.rope_traditional, 0.0f, config_.rope_position_scale, ctx.offset,
                    rope_periods_.get());
  }
  // Explicit positions (packed rows restart them per document): rotate by hand.
  auto shape = mx::shape_of(x);
  const int b = shape[0], h = shape[1], l = shape[2], half = hd / 2;
  Array x0, x1;
  if (config_.rope_traditional) {
    Array pairs = mx::reshape(x, {b, h, l, half, 2});
    Array a = mx::slice(pairs.get(), {0, 0, 0, 0, 0}, {b, h, l, half, 1});
    Array c = mx::slice(pairs.get(), {0, 0, 0, 0, 1}, {b, h, l, half, 2});
    x0 = mx::squeeze(a.get(), 4);
    x1 = mx::squeeze(c.get(), 4);
  } else {
    x0 = mx::slice(x, {0, 0, 0, 0}, {b, h, l, half});
    x1 = mx::slice(x, {0, 0, 0, half}, {b, h, l, hd});
  }
  Array x0c = mx::multiply(x0.get(), ctx.cos.get());
  Array x1s = mx::multiply(x1.get(), ctx.sin.get());
  Array x0s = mx::multiply(x0.get(), ctx.sin.get());
  Array x1c = mx::multiply(x1.get(), ctx.cos.get());
  Array r0 = mx::subtract(x0c.get(), x1s.get());
  Array r1 = mx::add(x0s.get(), x1c.get());
  Array out;
  if (config_.rope_traditional) {
    Array e0 = mx::expand_dims(r0.get(), 4);
    Array e1 = mx::expand_dims(r1.get(), 4);
    Array joined = mx::concatenate({e0.get(), e1.get()}, 4);
    out = mx::reshape(joined.get(), {b, h, l, hd});
  } else {
    out = mx::concatenate({r0.get(), r1.get()}, 3);
  }
  return mx::astype(out.get(), mx::dtype_of(x));
}

Array Model::project(const Layer& layer, int p, const mlx_array x, const BlockContext& ctx,
                     const std::vector<mlx_array>* lora) const {
  const Linear& l = layer.proj[p];
  Array y = linear_base(l, x, build_.kernel);
  mark_phase(p <= O ? "attention projections (base)" : "MLP projections (base)", {y.get()});
  return add_lora(layer, p, x, std::move(y), ctx, lora);
}

Array Model::add_lora(const Layer& layer, int p, const mlx_array x, Array y, const BlockContext& ctx,
                      const std::vector<mlx_array>* lora) const {
  const Linear& l = layer.proj[p];
  if (lora == nullptr || l.lora_index < 0) return y;
  mlx_array a = (*lora)[l.lora_index];
  mlx_array bm = (*lora)[l.lora_index + 1];
  Array xd = mx::ref(x);
  if (!ctx.dropout_keys.empty()) {
    const int layer_index = static_cast<int>(&layer - layers_.data());
    const int row = layer_index * kNumProj + p;
    Array key_row = mx::slice(ctx.dropout_keys.get(), {row, 0}, {row + 1, 2});
    Array key = mx::reshape(key_row.get(), {2});
    Array keep = mx::random_bernoulli(1.0f - lora_.dropout, mx::shape_of(x), key.get());
    Array zero = mx::scalar(0.0f);
    Array scaled = mx::multiply(x, mx::scalar(1.0f / (1.0f - lora_.dropout)).get());
    Array zero_t = mx::astype(zero.get(), mx::dtype_of(scaled.get()));
    xd = mx::where(keep.get(), scaled.get(), zero_t.get());
  }
  Array xa = mx::matmul(xd.get(), a);
  Array z = mx::matmul(xa.get(), bm);
  Array scale = mx::scalar(lora_.scale);
  Array zs = mx::multiply(z.get(), scale.get());
  Array zc = mx::astype(zs.get(), mx::dtype_of(y.get()));
  Array out = mx::add(y.get(), zc.get());
  mark_phase("LoRA branches", {out.get()});
  return out;
}

Array Model::block(int index, const mlx_array h_in, const BlockContext& ctx, const std::vector<mlx_array>* lora) const {
  const Layer& layer = layers_[index];
  const int b = ctx.batch, l = ctx.length, hd = config_.head_dim;
  const int nh = config_.num_heads, nkv = config_.num_kv_heads;

  Array x = mx::rms_norm(h_in, layer.attn_norm.get(), config_.rms_norm_eps);
  mark_phase("norms", {x.get()});
  auto qkv = project_group(layer, Q, 3, x.get(), ctx, lora);
  Array q = std::move(qkv[0]), k = std::move(qkv[1]), v = std::move(qkv[2]);
  q = mx::reshape(q.get(), {b, l, nh, hd});
  k = mx::reshape(k.get(), {b, l, nkv, hd});
  v = mx::reshape(v.get(), {b, l, nkv, hd});
  q = mx::transpose(q.get(), {0, 2, 1, 3});
  k = mx::transpose(k.get(), {0, 2, 1, 3});
  v = mx::transpose(v.get(), {0, 2, 1, 3});
  q = apply_rope(q.get(), ctx);
  k = apply_rope(k.get(), ctx);
  mark_phase("RoPE", {q.get(), k.get()});
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int block_rows = attention_block_rows(build_);
  const bool square = mx::dim(k.get(), 2) == l;
  const std::string mode = ctx.mask_mode;
  Array attn = block_rows > 0 && block_rows < l && square && (mode == "causal" || mode == "array")
                   ? blocked_causal_attention(q.get(), k.get(), v.get(), scale, ctx.mask_mode,
                                              ctx.mask.empty() ? mlx_array{} : ctx.mask.get(), block_rows)
                   : mx::attention(q.get(), k.get(), v.get(), scale, ctx.mask_mode,
                                   ctx.mask.empty() ? mlx_array{} : ctx.mask.get());
  mark_phase("attention (scores, softmax, values)", {attn.get()});
  attn = mx::transpose(attn.get(), {0, 2, 1, 3});
  attn = mx::reshape(attn.get(), {b, l, nh * hd});
  Array o = project(layer, O, attn.get(), ctx, lora);
  Array h = mx::add(h_in, o.get());
  mark_phase("residual adds", {h.get()});

  Array x2 = mx::rms_norm(h.get(), layer.mlp_norm.get(), config_.rms_norm_eps);
  mark_phase("norms", {x2.get()});
  Array d = mlp(layer, x2.get(), ctx, lora);
  Array out = mx::add(h.get(), d.get());
  mark_phase("residual adds", {out.get()});
  return out;
}

Array Model::mlp(const Layer& layer, const mlx_array x, const BlockContext& ctx,
                 const std::vector<mlx_array>* lora) const {
  const Linear &gate = layer.proj[GATE], &up = layer.proj[UP], &down = layer.proj[DOWN];
  const bool adapted = lora != nullptr && (gate.lora_index >= 0 || up.lora_index >= 0 || down.lora_index >= 0);
  if (mlp_in_blocks(gate, up, down, build_.kernel, adapted)) {
    auto shape = mx::shape_of(x);
    Array rows = mx::reshape(x, {static_cast<int>(mlx_array_size(x) / shape.back()), shape.back()});
    Array y = blocked_mlp(gate, up, down, rows.get());
    Array d = mx::reshape(y.get(), shape);
    mark_phase("MLP in blocks (projections, SwiGLU)", {d.get()});
    return d;
  }
  auto gu = project_group(layer, GATE, 2, x, ctx, lora);
  Array act = swiglu(gu[0].get(), gu[1].get());
  mark_phase("SwiGLU", {act.get()});
  return project(layer, DOWN, act.get(), ctx, lora);
}

Array Model::hidden(const Batch& batch, const ForwardOptions& options) const {
  if (!finalized_) throw std::runtime_error("the model is not finalized: load every weight first");
  auto shape = mx::shape_of(batch.tokens);
  if (shape.size() != 2) throw std::runtime_error("tokens must be [batch, length]");
  auto ctx = std::make_shared<BlockContext>();
  ctx->batch = shape[0];
  ctx->length = shape[1];
  const int l = ctx->length, total = ctx->offset + l;
  const bool windowed = config_.sliding_window && total > *config_.sliding_window;

  if (batch.segments.ctx != nullptr) {
    // Block-diagonal causal mask: a token sees earlier tokens of its own document only.
    Array sq = mx::expand_dims(batch.segments, 2);
    Array sk = mx::expand_dims(batch.segments, 1);
    Array same = mx::equal(sq.get(), sk.get());
    auto [rows, cols] = index_grid(0, l, l);
    Array causal = mx::less_equal(cols.get(), rows.get());
    Array m = mx::logical_and(same.get(), causal.get());
    if (windowed) {
      Array dist = mx::subtract(rows.get(), cols.get());
      Array w = mx::less(dist.get(), mx::scalar_int(*config_.sliding_window).get());
      m = mx::logical_and(m.get(), w.get());
    }
    ctx->mask = mx::expand_dims(m.get(), 1);
    ctx->mask_mode = "array";
  } else if (windowed) {
    auto [rows, cols] = index_grid(ctx->offset, l, total);
    Array causal = mx::less_equal(cols.get(), rows.get());
    Array dist = mx::subtract(rows.get(), cols.get());
    Array w = mx::less(dist.get(), mx::scalar_int(*config_.sliding_window).get());
    ctx->mask = mx::logical_and(causal.get(), w.get());
    ctx->mask_mode = "array";
  } else if (l == 1) {
    ctx->mask_mode = "";
  }

  if (batch.positions.ctx != nullptr) {
    Array pos = mx::astype(batch.positions, MLX_FLOAT32);
    Array scaled = mx::multiply(pos.get(), mx::scalar(config_.rope_position_scale).get());
    Array p4 = mx::reshape(scaled.get(), {ctx->batch, 1, l, 1});
    Array angles = mx::multiply(p4.get(), rope_inv_freqs_.get());
    ctx->cos = mx::cos(angles.get());
    ctx->sin = mx::sin(angles.get());
  }
  const bool use_lora = options.lora != nullptr && lora_enabled_ && !options.lora->empty();
  const std::vector<mlx_array>* lora = use_lora ? options.lora : nullptr;
  if (lora != nullptr && options.dropout_key.ctx != nullptr && lora_.dropout > 0) {
    ctx->dropout_keys = mx::random_split_num(options.dropout_key, config_.num_layers * kNumProj);
  }

  mark_phase("mask and RoPE tables", {ctx->mask.empty() ? mlx_array{} : ctx->mask.get(),
                                       ctx->cos.empty() ? mlx_array{} : ctx->cos.get(),
                                       ctx->sin.empty() ? mlx_array{} : ctx->sin.get(),
                                       ctx->dropout_keys.empty() ? mlx_array{} : ctx->dropout_keys.get()});
  Array h = embed_tokens(batch.tokens);
  mark_phase("embedding", {h.get()});
  const int n = config_.num_layers;
  const int run = options.checkpoint ? checkpoint_run_length(n, mlx_array_nbytes(h.get())) : 0;
  for (int i = 0; i < n; i += std::max(run, 1)) {
    h = run == 0   ? block(i, h.get(), *ctx, lora)
        : run == 1 ? checkpointed_run(*this, i, i + 1, false, h.get(), ctx, lora)
                   : checkpointed_run(*this, i, std::min(n, i + run), true, h.get(), ctx, lora);
  }
  Array out = mx::rms_norm(h.get(), final_norm_.get(), config_.rms_norm_eps);
  mark_phase("norms", {out.get()});
  return out;
}

Array Model::logits(const Batch& batch, const ForwardOptions& options) const {
  Array h = hidden(batch, options);
  Array out;
  if (config_.tie_word_embeddings) {
    Array et = mx::transpose(embed_.get(), {1, 0});
    out = mx::matmul(h.get(), et.get());
  } else {
    out = linear_base(lm_head_, h.get(), build_.kernel);
  }
  return mx::astype(out.get(), MLX_FLOAT32);
}

int Model::resolved_loss_chunk_tokens() const {
  return loss_chunk_tokens_ < 0 ? default_loss_chunk_tokens(config_.vocab_size) : loss_chunk_tokens_;
}

std::pair<Array, Array> Model::loss(const Batch& batch, const mlx_array targets, const mlx_array mask,
                                    const ForwardOptions& options) const {
  Array m = mx::astype(mask, MLX_FLOAT32);
  Array t = mx::astype(targets, MLX_INT32);
  Array count = mx::sum(m.get());
  const int chunk = resolved_loss_chunk_tokens();
  if (chunk == 0) {
    Array lg = logits(batch, options);
    mark_phase("LM head", {lg.get()});
    Array loss = masked_cross_entropy_sum(lg.get(), t.get(), m.get());
    mark_phase("loss", {loss.get(), count.get()});
    return {std::move(loss), std::move(count)};
  }
  Array h = hidden(batch, options);
  const int n = mx::dim(h.get(), 0) * mx::dim(h.get(), 1);
  Array rows = mx::reshape(h.get(), {n, config_.hidden_size});
  Array t1 = mx::reshape(t.get(), {n});
  Array m1 = mx::reshape(m.get(), {n});
  Linear tied;
  if (config_.tie_word_embeddings) tied.w = mx::ref(embed_.get());
  const Linear& head = config_.tie_word_embeddings ? tied : lm_head_;
  Array loss = chunked_cross_entropy_sum(rows.get(), head, build_.kernel, t1.get(), m1.get(), chunk,
                                         options.differentiable, compiled_ops());
  mark_phase("LM head and loss (chunked)", {loss.get(), count.get()});
  return {std::move(loss), std::move(count)};
}

}  // namespace mlxq::model
