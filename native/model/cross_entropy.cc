#include "model/cross_entropy.h"

#include <vector>

#include "errors.h"
#include "mx.h"

namespace mlxq::model {
namespace {

/** [Σ masked CE, logsumexp [B, L, 1]]: the second output saves the backward pass recomputing it. */
std::pair<Array, Array> forward(const mlx_array logits, const mlx_array targets, const mlx_array mask) {
  Array lse_keep = mx::logsumexp_axis(logits, -1, true);
  Array lse = mx::squeeze(lse_keep.get(), -1);
  Array idx = mx::expand_dims(targets, -1);
  Array picked = mx::take_along_axis(logits, idx.get(), -1);
  Array target_logit = mx::squeeze(picked.get(), -1);
  Array ce = mx::subtract(lse.get(), target_logit.get());
  Array masked = mx::multiply(ce.get(), mask);
  return {mx::sum(masked.get()), std::move(lse_keep)};
}

int run_forward(mlx_vector_array* out, const mlx_vector_array in, void*) {
  try {
    auto x = mx::arrays_of(in);
    auto [loss, lse] = forward(x[0].get(), x[1].get(), x[2].get());
    mlx_array r[2] = {loss.get(), lse.get()};
    *out = mlx_vector_array_new_data(r, 2);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

// d loss / d logits = g · mask · (softmax(logits) − one_hot(target)); targets and mask get zeros.
int run_vjp(mlx_vector_array* out, const mlx_vector_array primals, const mlx_vector_array cotangents,
            const mlx_vector_array outputs, void*) {
  try {
    auto p = mx::arrays_of(primals);
    auto c = mx::arrays_of(cotangents);
    auto o = mx::arrays_of(outputs);
    const mlx_array logits = p[0].get(), targets = p[1].get(), mask = p[2].get();
    const int vocab = mx::dim(logits, -1);
    Array lse = mx::stop_gradient(o[1].get());
    Array shifted = mx::subtract(logits, lse.get());
    Array probs = mx::exp(shifted.get());
    Array ids = mx::arange(0, vocab, MLX_INT32);
    Array idx = mx::expand_dims(targets, -1);
    Array hot = mx::equal(idx.get(), ids.get());
    Array hot_f = mx::astype(hot.get(), MLX_FLOAT32);
    Array diff = mx::subtract(probs.get(), hot_f.get());
    Array weight = mx::multiply(mask, c[0].get());
    Array w = mx::expand_dims(weight.get(), -1);
    Array dlogits = mx::multiply(diff.get(), w.get());
    Array dtargets = mx::zeros(mx::shape_of(targets), mx::dtype_of(targets));
    Array dmask = mx::zeros(mx::shape_of(mask), mx::dtype_of(mask));
    mlx_array grads[3] = {dlogits.get(), dtargets.get(), dmask.get()};
    *out = mlx_vector_array_new_data(grads, 3);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

}  // namespace

Array masked_cross_entropy_sum(const mlx_array logits, const mlx_array targets, const mlx_array mask) {
  Closure fn(mlx_closure_new_func_payload(&run_forward, nullptr, nullptr));
  ClosureCustom vjp(mlx_closure_custom_new_func_payload(&run_vjp, nullptr, nullptr));
  return mx::with_vjp(fn, vjp, {logits, targets, mask});
}

}  // namespace mlxq::model
