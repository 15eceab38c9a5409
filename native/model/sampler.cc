#include "model/sampler.h"

#include <limits>

#include "mx.h"

namespace mlxq::model {

int sample_token(const mlx_array logits, const SamplerOptions& options, Array& key) {
  Array token = sample_token_lazy(logits, options, key);
  return mx::item<int>(token.get());
}

namespace {

Array as_token(const mlx_array t) { return mx::reshape(mx::astype(t, MLX_INT32).get(), {1}); }

}  // namespace

Array sample_token_lazy(const mlx_array logits, const SamplerOptions& options, Array& key) {
  if (options.temperature <= 0.0f) return as_token(mx::argmax_axis(logits, 0).get());
  const int vocab = mx::dim(logits, 0);
  Array l = mx::multiply(logits, mx::scalar(1.0f / options.temperature).get());
  Array neg_inf = mx::scalar(-std::numeric_limits<float>::infinity());
  if (options.top_k > 0 && options.top_k < vocab) {
    Array sorted = mx::sort_axis(l.get(), 0);
    Array kth = mx::slice(sorted.get(), {vocab - options.top_k}, {vocab - options.top_k + 1});
    Array keep = mx::greater_equal(l.get(), kth.get());
    l = mx::where(keep.get(), l.get(), neg_inf.get());
  }
  auto [next, sub] = mx::random_split(key.get());
  key = std::move(next);
  if (options.top_p > 0.0f && options.top_p < 1.0f) {
    // Keep the smallest set of most likely tokens whose probability reaches top_p.
    Array probs = mx::softmax_axis(l.get(), 0);
    Array order = mx::argsort_axis(l.get(), 0);  // ascending
    Array sorted_probs = mx::take_axis(probs.get(), order.get(), 0);
    Array cumulative = mx::cumsum(sorted_probs.get(), 0);
    Array keep = mx::greater_equal(cumulative.get(), mx::scalar(1.0f - options.top_p).get());
    Array sorted_logits = mx::take_axis(l.get(), order.get(), 0);
    Array kept = mx::where(keep.get(), sorted_logits.get(), neg_inf.get());
    Array choice = mx::random_categorical(kept.get(), 0, sub.get());
    Array token = mx::take_axis(order.get(), mx::reshape(choice.get(), {1}).get(), 0);
    return as_token(token.get());
  }
  return as_token(mx::random_categorical(l.get(), 0, sub.get()).get());
}

}  // namespace mlxq::model
