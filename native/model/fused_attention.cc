#include "model/fused_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "errors.h"
#include "mx.h"

namespace mlxq::model {

int attention_block_rows(const BuildOptions& build) {
  if (build.attention_query_block < 0) return 0;
  if (build.attention_query_block > 0) return build.attention_query_block;
  // GPU backends have fused attention kernels that never hold the scores; blocks would only add launches.
  Device dev(mlx_device_new());
  check(mlx_stream_get_device(dev.out(), mx::stream()), "mlx_stream_get_device");
  mlx_device_type type;
  check(mlx_device_get_type(&type, dev.get()), "mlx_device_get_type");
  return type == MLX_CPU ? 128 : 0;
}

namespace {

/** What the closures hold: the shape of the problem and the keep-mask of "array" mode. */
struct BlockedAttention {
  float scale = 1;
  bool causal = true;
  int rows = 0, kv_heads = 0;
  Array mask;  // bool [B or 1, 1, L, L] or [L, L]; empty when causal
};

/** [B, H, L, D] → [B, kv_heads, H / kv_heads, L, D]: each key head with its group of query heads. */
Array grouped(const mlx_array x, int kv_heads) {
  auto s = mx::shape_of(x);
  return mx::reshape(x, {s[0], kv_heads, s[1] / kv_heads, s[2], s[3]});
}

Array rows_of(const mlx_array x5, int start, int stop) {
  auto s = mx::shape_of(x5);
  return mx::slice(x5, {0, 0, 0, start, 0}, {s[0], s[1], s[2], stop, s[4]});
}

/** Keys visible to query rows [start, stop): [r, stop] causal, or the mask's rows broadcast to 5 axes. */
Array block_keep(const BlockedAttention& a, int start, int stop) {
  if (a.causal) {
    Array r = mx::arange(start, stop, MLX_INT32);
    Array rows = mx::expand_dims(r.get(), 1);
    Array c = mx::arange(0, stop, MLX_INT32);
    Array cols = mx::expand_dims(c.get(), 0);
    return mx::less_equal(cols.get(), rows.get());
  }
  mx::Shape hi = mx::shape_of(a.mask.get()), lo(hi.size(), 0);
  const size_t axis = hi.size() - 2;
  lo[axis] = start;
  hi[axis] = stop;
  hi[axis + 1] = stop;
  Array m = mx::slice(a.mask.get(), lo, hi);
  return hi.size() == 4 ? mx::expand_dims(m.get(), 2) : std::move(m);
}

/** softmax(scale·q·kᵀ) over the visible keys for one block: [B, G, R, r, stop]. */
Array block_probs(const BlockedAttention& a, const mlx_array qi, const mlx_array keys, int start, int stop) {
  Array scale = mx::astype(mx::scalar(a.scale).get(), mx::dtype_of(qi));
  Array qs = mx::multiply(qi, scale.get());
  Array kt = mx::swapaxes(keys, -1, -2);
  Array scores = mx::matmul(qs.get(), kt.get());
  Array keep = block_keep(a, start, stop);
  Array hidden = mx::astype(mx::scalar(-INFINITY).get(), mx::dtype_of(scores.get()));
  Array masked = mx::where(keep.get(), scores.get(), hidden.get());
  return mx::softmax_axis(masked.get(), -1);
}

Array keys_to(const mlx_array k5, int stop) {
  auto s = mx::shape_of(k5);
  return mx::slice(k5, {0, 0, 0, 0, 0}, {s[0], s[1], s[2], stop, s[4]});
}

Array forward(const BlockedAttention& a, const mlx_array q, const mlx_array k, const mlx_array v) {
  Array q5 = grouped(q, a.kv_heads), k5 = mx::expand_dims(k, 2), v5 = mx::expand_dims(v, 2);
  const int l = mx::dim(q, 2);
  std::vector<Array> parts;
  Array previous;
  for (int start = 0; start < l; start += a.rows) {
    const int stop = std::min(l, start + a.rows);
    // Chained: scheduled breadth-first, every block's scores would exist at once.
    Array qi0 = rows_of(q5.get(), start, stop);
    Array qi = mx::after(qi0.get(), previous);
    Array keys = keys_to(k5.get(), stop), values = keys_to(v5.get(), stop);
    Array p = block_probs(a, qi.get(), keys.get(), start, stop);
    Array o = mx::matmul(p.get(), values.get());
    previous = mx::ref(o.get());
    parts.push_back(std::move(o));
  }
  std::vector<mlx_array> views;
  for (const auto& p : parts) views.push_back(p.get());
  Array out5 = views.size() == 1 ? std::move(parts[0]) : mx::concatenate(views, 3);
  auto s = mx::shape_of(q);
  return mx::reshape(out5.get(), {s[0], s[1], s[2], mx::dim(v, 3)});
}

/** total[:, :, :stop] += part (part [B, G, stop, D]). */
Array add_rows(const Array& total, const mlx_array part) {
  auto s = mx::shape_of(part);
  const mx::Shape lo{0, 0, 0, 0};
  Array current = mx::slice(total.get(), lo, s);
  Array sum = mx::add(current.get(), part);
  return mx::slice_update(total.get(), sum.get(), lo, s);
}

struct Grads {
  Array dq, dk, dv;
};

/** One block's share of the gradients: recomputes its softmax, then the rules of softmax and matmul. */
void backward_block(const BlockedAttention& a, const mlx_array q5, const mlx_array k5, const mlx_array v5,
                    const mlx_array do5, int start, int stop, Grads& g, std::vector<Array>& dq_parts) {
  Array qi0 = rows_of(q5, start, stop);
  Array qi = mx::after(qi0.get(), g.dk);
  Array keys = keys_to(k5, stop), values = keys_to(v5, stop);
  Array p = block_probs(a, qi.get(), keys.get(), start, stop);
  Array doi = rows_of(do5, start, stop);
  Array pt = mx::swapaxes(p.get(), -1, -2);
  Array dv_all = mx::matmul(pt.get(), doi.get());
  Array dv_i = mx::sum_axis(dv_all.get(), 2);
  Array vt = mx::swapaxes(values.get(), -1, -2);
  Array dp = mx::matmul(doi.get(), vt.get());
  Array dp_p = mx::multiply(dp.get(), p.get());
  Array row = mx::sum_axis(dp_p.get(), -1, true);
  Array centred = mx::subtract(dp.get(), row.get());
  Array ds0 = mx::multiply(p.get(), centred.get());
  Array scale = mx::astype(mx::scalar(a.scale).get(), mx::dtype_of(ds0.get()));
  Array ds = mx::multiply(ds0.get(), scale.get());
  dq_parts.push_back(mx::matmul(ds.get(), keys.get()));
  Array dst = mx::swapaxes(ds.get(), -1, -2);
  Array dk_all = mx::matmul(dst.get(), qi.get());
  Array dk_i = mx::sum_axis(dk_all.get(), 2);
  g.dk = add_rows(g.dk, dk_i.get());
  g.dv = add_rows(g.dv, dv_i.get());
}

Grads backward(const BlockedAttention& a, const mlx_array q, const mlx_array k, const mlx_array v, const mlx_array dout) {
  Array q5 = grouped(q, a.kv_heads), k5 = mx::expand_dims(k, 2), v5 = mx::expand_dims(v, 2);
  Array do5 = grouped(dout, a.kv_heads);
  const int l = mx::dim(q, 2);
  Grads g{Array(), mx::zeros(mx::shape_of(k), mx::dtype_of(k)), mx::zeros(mx::shape_of(v), mx::dtype_of(v))};
  std::vector<Array> dq_parts;
  for (int start = 0; start < l; start += a.rows) {
    backward_block(a, q5.get(), k5.get(), v5.get(), do5.get(), start, std::min(l, start + a.rows), g, dq_parts);
  }
  std::vector<mlx_array> views;
  for (const auto& p : dq_parts) views.push_back(p.get());
  Array dq5 = views.size() == 1 ? std::move(dq_parts[0]) : mx::concatenate(views, 3);
  g.dq = mx::reshape(dq5.get(), mx::shape_of(q));
  return g;
}

int run_forward(mlx_vector_array* out, const mlx_vector_array in, void* raw) {
  try {
    auto p = mx::arrays_of(in);
    Array o = forward(*static_cast<BlockedAttention*>(raw), p[0].get(), p[1].get(), p[2].get());
    mlx_array r = o.get();
    *out = mlx_vector_array_new_data(&r, 1);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

int run_vjp(mlx_vector_array* out, const mlx_vector_array primals, const mlx_vector_array cotangents,
            const mlx_vector_array, void* raw) {
  try {
    auto p = mx::arrays_of(primals);
    auto c = mx::arrays_of(cotangents);
    Grads g = backward(*static_cast<BlockedAttention*>(raw), p[0].get(), p[1].get(), p[2].get(), c[0].get());
    mlx_array r[3] = {g.dq.get(), g.dk.get(), g.dv.get()};
    *out = mlx_vector_array_new_data(r, 3);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

void delete_attention(void* p) { delete static_cast<BlockedAttention*>(p); }

BlockedAttention* held(float scale, bool causal, int rows, int kv_heads, const mlx_array mask) {
  return new BlockedAttention{scale, causal, rows, kv_heads, causal ? Array() : mx::ref(mask)};
}

/** One mx::attention per query block, differentiated by MLX (which keeps every block's scores). */
Array differentiated_blocks(const mlx_array q, const mlx_array k, const mlx_array v, float scale,
                            const char* mask_mode, const mlx_array mask, int rows) {
  auto qs = mx::shape_of(q);
  auto ks = mx::shape_of(k);
  auto vs = mx::shape_of(v);
  const int b = qs[0], hq = qs[1], l = qs[2], d = qs[3], hk = ks[1], dv = vs[3];
  const bool causal = std::string(mask_mode) == "causal";
  std::vector<Array> parts;
  for (int start = 0; start < l; start += rows) {
    const int stop = std::min(l, start + rows);
    Array qi = mx::slice(q, {0, 0, start, 0}, {b, hq, stop, d});
    Array ki = mx::slice(k, {0, 0, 0, 0}, {b, hk, stop, d});
    Array vi = mx::slice(v, {0, 0, 0, 0}, {b, hk, stop, dv});
    Array mi;
    if (!causal) {
      mx::Shape hi = mx::shape_of(mask), lo(hi.size(), 0);
      const size_t rows_axis = hi.size() - 2;
      lo[rows_axis] = start;
      hi[rows_axis] = stop;
      hi[rows_axis + 1] = stop;
      mi = mx::slice(mask, lo, hi);
    }
    // In "causal" mode MLX aligns the queries with the last keys, which is where this block ends.
    parts.push_back(mx::attention(qi.get(), ki.get(), vi.get(), scale, mask_mode, causal ? mlx_array{} : mi.get()));
  }
  std::vector<mlx_array> views;
  for (const auto& p : parts) views.push_back(p.get());
  return views.size() == 1 ? std::move(parts[0]) : mx::concatenate(views, 2);
}

/**
 * Whether all blocks' scores together pass 256 MiB (MLXQ_ATTENTION_VJP_BYTES in tests): below it,
 * MLX's own differentiation is faster (the hand-written backward recomputes the softmax).
 */
bool needs_own_backward(const mlx_array q, int keys) {
  constexpr long long kAbove = 256LL << 20;
  const char* v = std::getenv("MLXQ_ATTENTION_VJP_BYTES");
  const long long configured = v ? std::atoll(v) : 0;
  const long long limit = configured > 0 ? configured : kAbove;
  const long long scores = static_cast<long long>(mlx_array_size(q) / mx::dim(q, 3)) * keys * 4;
  return scores > limit;
}

}  // namespace

Array blocked_causal_attention(const mlx_array q, const mlx_array k, const mlx_array v, float scale,
                               const char* mask_mode, const mlx_array mask, int rows) {
  if (!needs_own_backward(q, mx::dim(k, 2))) return differentiated_blocks(q, k, v, scale, mask_mode, mask, rows);
  const bool causal = std::string(mask_mode) == "causal";
  const int kv_heads = mx::dim(k, 1);
  Closure fn(mlx_closure_new_func_payload(&run_forward, held(scale, causal, rows, kv_heads, mask), &delete_attention));
  ClosureCustom vjp(
      mlx_closure_custom_new_func_payload(&run_vjp, held(scale, causal, rows, kv_heads, mask), &delete_attention));
  return mx::with_vjp(fn, vjp, {q, k, v});
}

}  // namespace mlxq::model
