#include "model/chunked_loss.h"

#include <algorithm>
#include <vector>

#include "errors.h"
#include "model/compiled_ops.h"
#include "model/linear.h"
#include "model/vocab_blocked_loss.h"
#include "mx.h"

namespace mlxq::model {
namespace {

/** The frozen head, held by the custom function's closures for as long as the graph needs it. */
struct Head {
  Linear l;  // its arrays are references to the model's
  LinearKernel kernel = LinearKernel::DequantizeMatmul;
  int chunk = 0;
  /** Compiled softmax-gradient kernels, or null: plain ops. */
  std::shared_ptr<const CompiledOps> ops;
};

/** A large quantized head goes vocabulary block by vocabulary block (vocab_blocked_loss.h). */
bool blocked_by_vocab(const Head& hd) {
  return hd.kernel == LinearKernel::DequantizeMatmul && dequantizes_in_blocks(hd.l);
}

Array concat_rows(const std::vector<Array>& parts) {
  std::vector<mlx_array> views;
  for (const auto& p : parts) views.push_back(p.get());
  VectorArray v(mlx_vector_array_new_data(views.data(), views.size()));
  Array out;
  check(mlx_concatenate_axis(out.out(), v.get(), 0, mx::stream()), "mlx_concatenate_axis");
  return out;
}

/** The head as a dense [V, D] matrix for one pass (dequantized once), or empty: quantized_matmul per chunk. */
Array pass_weight(const Head& hd, mlx_dtype dtype) {
  if (!hd.l.quantized()) return mx::ref(hd.l.w.get());
  if (hd.kernel == LinearKernel::QuantizedMatmul) return Array();
  // Through dense_weight: it widens float16 scales before dequantizing (MLX dequantizes in the
  // scales' dtype) and makes implied biases.
  return dense_weight(hd.l, dtype);
}

/** float32 logits of rows x [c, D], as linear_base + astype would give them. */
Array chunk_logits(const Head& hd, const Array& dense, const mlx_array x) {
  Array y;
  if (!dense.empty()) {
    Array wt = mx::transpose(dense.get(), {1, 0});
    y = mx::matmul(x, wt.get());
  } else {
    QuantParams q = quant_params(hd.l, mx::dtype_of(x));
    y = mx::quantized_matmul(x, hd.l.w.get(), q.scales.get(), q.biases.get(), true, hd.l.group_size, hd.l.bits);
  }
  if (!hd.l.bias.empty()) y = mx::add(y.get(), hd.l.bias.get());
  return mx::astype(y.get(), MLX_FLOAT32);
}

/** d loss / d x for d loss / d logits `dz` [c, V], in the dtype of x. */
Array chunk_input_grad(const Head& hd, const Array& dense, const mlx_array dz) {
  if (!dense.empty()) return mx::matmul(dz, dense.get());
  QuantParams q = quant_params(hd.l, mx::dtype_of(dz));
  return mx::quantized_matmul(dz, hd.l.w.get(), q.scales.get(), q.biases.get(), false, hd.l.group_size, hd.l.bits);
}

struct Span {
  int start, stop;
};

std::vector<Span> spans(int n, int chunk) {
  std::vector<Span> out;
  for (int s = 0; s < n; s += chunk) out.push_back({s, std::min(n, s + chunk)});
  return out;
}

/** g·mask·(softmax(z) − one_hot(target)) for one chunk, built as the unchunked loss builds it. */
Array chunk_logit_grad(const mlx_array z, const mlx_array lse, const mlx_array targets, const mlx_array weight) {
  Array lse_col = mx::expand_dims(lse, -1);
  Array shifted = mx::subtract(z, lse_col.get());
  Array probs = mx::exp(shifted.get());
  Array idx = mx::expand_dims(targets, -1);
  Array p_target = mx::take_along_axis(probs.get(), idx.get(), -1);
  Array one = mx::scalar(1.0f);
  Array p_minus_one = mx::subtract(p_target.get(), one.get());
  Array diff = mx::put_along_axis(probs.get(), idx.get(), p_minus_one.get(), -1);
  Array w = mx::expand_dims(weight, -1);
  return mx::multiply(diff.get(), w.get());
}

struct ChunkLoss {
  Array ce;
  Array dz;
};

/**
 * Cross-entropy and d loss / d logits of a chunk with one exp pass: e = exp(z − max) feeds both
 * the log-sum-exp (max + log Σe) and the softmax (e / Σe), each a compiled kernel over [c, V].
 */
ChunkLoss fused_chunk_loss(const CompiledOps& ops, const mlx_array z, const mlx_array targets, const mlx_array weight) {
  Array m = mx::max_axis(z, -1, true);
  Array e = ops.shifted_exp(z, m.get());
  Array total = mx::sum_axis(e.get(), -1, true);
  Array log_total = mx::log(total.get());
  Array lse = mx::add(m.get(), log_total.get());
  Array idx = mx::expand_dims(targets, -1);
  Array picked = mx::take_along_axis(z, idx.get(), -1);
  Array ce_col = mx::subtract(lse.get(), picked.get());
  Array w = mx::expand_dims(weight, -1);
  Array f = mx::divide(w.get(), total.get());
  Array columns = mx::arange(0, mx::dim(z, 1), MLX_INT32);
  Array columns_row = mx::expand_dims(columns.get(), 0);
  Array dz = ops.logit_grad(e.get(), f.get(), w.get(), idx.get(), columns_row.get());
  return {mx::squeeze(ce_col.get(), -1), std::move(dz)};
}

struct ChunkedResult {
  Array loss;
  Array dh;  // d loss / d h for a cotangent of 1, when asked for
};

/**
 * Every chunk's logits, cross-entropy and, with `gradient`, its d loss / d rows while the logits
 * are at hand: the backward pass then only scales it, and no chunk's logits are computed twice.
 */
ChunkedResult run_chunks(const Head& hd, const mlx_array h, const mlx_array targets, const mlx_array mask, bool gradient) {
  if (blocked_by_vocab(hd)) {
    HeadLoss r = vocab_blocked_cross_entropy(hd.l, h, targets, mask, gradient);
    return {std::move(r.loss), std::move(r.dh)};
  }
  const int n = mx::dim(h, 0), d = mx::dim(h, 1);
  const mlx_dtype dtype = mx::dtype_of(h);
  Array dense = pass_weight(hd, dtype);
  std::vector<Array> ces, grads;
  Array previous;
  for (const Span& s : spans(n, hd.chunk)) {
    Array rows = mx::slice(h, {s.start, 0}, {s.stop, d});
    // Chained: MLX schedules a lazy graph breadth-first and would compute every chunk's logits
    // before reducing any; a chunk that waits for the previous one's result keeps about two alive.
    // (Evaluating chunk by chunk inside value_and_grad would keep the whole forward's activations.)
    Array x = mx::after(rows.get(), previous);
    Array z = chunk_logits(hd, dense, x.get());
    if (gradient && hd.ops) {
      Array t = mx::slice(targets, {s.start}, {s.stop});
      Array w = mx::slice(mask, {s.start}, {s.stop});
      ChunkLoss cl = fused_chunk_loss(*hd.ops, z.get(), t.get(), w.get());
      Array dz_c = mx::astype(cl.dz.get(), dtype);
      Array dx = chunk_input_grad(hd, dense, dz_c.get());
      previous = mx::ref(dx.get());
      grads.push_back(std::move(dx));
      ces.push_back(std::move(cl.ce));
      continue;
    }
    Array lse = mx::logsumexp_axis(z.get(), -1, false);
    Array t = mx::slice(targets, {s.start}, {s.stop});
    Array idx = mx::expand_dims(t.get(), -1);
    Array picked = mx::take_along_axis(z.get(), idx.get(), -1);
    Array target_logit = mx::squeeze(picked.get(), -1);
    Array ce = mx::subtract(lse.get(), target_logit.get());
    if (gradient) {
      Array w = mx::slice(mask, {s.start}, {s.stop});
      Array dz = chunk_logit_grad(z.get(), lse.get(), t.get(), w.get());
      Array dz_c = mx::astype(dz.get(), dtype);
      Array dx = chunk_input_grad(hd, dense, dz_c.get());
      previous = mx::ref(dx.get());
      grads.push_back(std::move(dx));
    } else {
      previous = mx::ref(ce.get());
    }
    ces.push_back(std::move(ce));
  }
  Array ce_all = concat_rows(ces);
  Array masked = mx::multiply(ce_all.get(), mask);
  ChunkedResult out{mx::sum(masked.get()), Array()};
  if (gradient) {
    Array joined = concat_rows(grads);
    out.dh = mx::astype(joined.get(), dtype);
  }
  return out;
}

/** Outputs [Σ masked CE, d loss / d h]. */
int run_forward(mlx_vector_array* out, const mlx_vector_array in, void* raw) {
  try {
    auto p = mx::arrays_of(in);
    ChunkedResult r = run_chunks(*static_cast<Head*>(raw), p[0].get(), p[1].get(), p[2].get(), true);
    mlx_array o[2] = {r.loss.get(), r.dh.get()};
    *out = mlx_vector_array_new_data(o, 2);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

int run_vjp(mlx_vector_array* out, const mlx_vector_array primals, const mlx_vector_array cotangents,
            const mlx_vector_array outputs, void*) {
  try {
    auto p = mx::arrays_of(primals);
    auto c = mx::arrays_of(cotangents);
    auto o = mx::arrays_of(outputs);
    const mlx_array h = p[0].get(), targets = p[1].get(), mask = p[2].get();
    Array g = mx::astype(c[0].get(), mx::dtype_of(h));
    Array dh = mx::multiply(o[1].get(), g.get());
    Array dtargets = mx::zeros(mx::shape_of(targets), mx::dtype_of(targets));
    Array dmask = mx::zeros(mx::shape_of(mask), mx::dtype_of(mask));
    mlx_array grads[3] = {dh.get(), dtargets.get(), dmask.get()};
    *out = mlx_vector_array_new_data(grads, 3);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

Head* head_of(const Linear& l, LinearKernel kernel, int chunk, std::shared_ptr<const CompiledOps> ops) {
  auto* hd = new Head{linear_ref(l), kernel, chunk, std::move(ops)};
  return hd;
}

void delete_head(void* p) { delete static_cast<Head*>(p); }

}  // namespace

int default_loss_chunk_tokens(int vocab) {
  // 8 MiB of float32 logits: a chunk's graph holds about seven [tokens, vocab] buffers at its peak
  // (logits, log-sum-exp temporaries, probabilities, their gradient), so ~60 MiB in all.
  constexpr long long kChunkElements = 1LL << 21;
  return static_cast<int>(std::max(1LL, kChunkElements / std::max(1, vocab)));
}

Array chunked_cross_entropy_sum(const mlx_array h, const Linear& head, LinearKernel kernel, const mlx_array targets,
                                const mlx_array mask, int chunk_tokens, bool differentiable,
                                std::shared_ptr<const CompiledOps> ops) {
  if (chunk_tokens <= 0) throw std::invalid_argument("the loss chunk must hold at least one token");
  if (!differentiable) {
    Head hd{linear_ref(head), kernel, chunk_tokens, nullptr};
    return std::move(run_chunks(hd, h, targets, mask, false).loss);
  }
  Closure fn(mlx_closure_new_func_payload(&run_forward, head_of(head, kernel, chunk_tokens, std::move(ops)), &delete_head));
  ClosureCustom vjp(mlx_closure_custom_new_func_payload(&run_vjp, nullptr, nullptr));
  return mx::with_vjp(fn, vjp, {h, targets, mask});
}

}  // namespace mlxq::model
