#include "model/optimizer.h"

#include <cmath>
#include <stdexcept>

#include "heap.h"
#include "mx.h"

namespace mlxq::model {

std::pair<double, double> LoraOptimizer::accumulate(Model& model, const Batch& batch, const mlx_array targets,
                                                    const mlx_array mask, const mlx_array dropout_key,
                                                    bool checkpoint) {
  auto result = model.loss_and_grads(batch, targets, mask, dropout_key, checkpoint);
  if (grads_.empty()) {
    grads_ = std::move(result.grads);
  } else {
    for (size_t i = 0; i < grads_.size(); ++i) grads_[i] = mx::add(grads_[i].get(), result.grads[i].get());
  }
  std::vector<mlx_array> pending{result.loss.get(), result.count.get()};
  for (auto& g : grads_) pending.push_back(g.get());
  mx::eval(pending);
  // The backward pass's buffers are free now; the optimizer and the next batch need far less.
  release_free_heap();
  const double loss = mx::item<float>(result.loss.get());
  const double count = mx::item<float>(result.count.get());
  loss_sum_ += loss;
  tokens_ += count;
  return {loss, count};
}

void LoraOptimizer::clear_gradients() {
  grads_.clear();
  loss_sum_ = 0;
  tokens_ = 0;
}

namespace {

/**
 * ‖grads · inv_tokens‖, one parameter at a time: each scaled copy is freed before the next is
 * made (a 7B r64 adapter's gradients are 0.22 GB, and a lazy graph over all of them would hold
 * every copy at once).
 */
float scaled_grad_norm(const std::vector<Array>& grads, float inv_tokens) {
  Array scale = mx::scalar(inv_tokens);
  Array sq_sum = mx::scalar(0.0f);
  for (const auto& raw : grads) {
    Array g = mx::multiply(raw.get(), scale.get());
    Array sq = mx::square(g.get());
    sq_sum = mx::add(sq_sum.get(), mx::sum(sq.get()).get());
    mx::eval({sq_sum.get()});
  }
  Array norm = mx::sqrt(sq_sum.get());
  return mx::item<float>(norm.get());
}

struct AdamWScalars {
  Array inv_tokens, clip, b1, b1c, b2, b2c, step_size, inv_bc2_sqrt, eps, decay;
};

AdamWScalars adamw_scalars(const AdamWOptions& o, float inv_tokens, float clip, int64_t step) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(o.beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(o.beta2), static_cast<double>(step));
  return {mx::scalar(inv_tokens),
          mx::scalar(clip),
          mx::scalar(o.beta1),
          mx::scalar(1.0f - o.beta1),
          mx::scalar(o.beta2),
          mx::scalar(1.0f - o.beta2),
          mx::scalar(static_cast<float>(o.learning_rate / bc1)),
          mx::scalar(static_cast<float>(1.0 / std::sqrt(bc2))),
          mx::scalar(o.eps),
          mx::scalar(1.0f - o.learning_rate * o.weight_decay)};
}

/** One parameter's AdamW step: p, m and v are replaced by their (lazy) updated values. */
void adamw_update(Array& p, Array& m, Array& v, const mlx_array raw_grad, const AdamWScalars& k) {
  Array g = mx::multiply(raw_grad, k.inv_tokens.get());
  Array gi = mx::multiply(g.get(), k.clip.get());
  Array m1 = mx::multiply(m.get(), k.b1.get());
  Array m2 = mx::multiply(gi.get(), k.b1c.get());
  m = mx::add(m1.get(), m2.get());
  Array g2 = mx::square(gi.get());
  Array v1 = mx::multiply(v.get(), k.b2.get());
  Array v2 = mx::multiply(g2.get(), k.b2c.get());
  v = mx::add(v1.get(), v2.get());
  // p ← p·(1 − lr·wd) − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
  Array root = mx::sqrt(v.get());
  Array denom0 = mx::multiply(root.get(), k.inv_bc2_sqrt.get());
  Array denom = mx::add(denom0.get(), k.eps.get());
  Array ratio = mx::divide(m.get(), denom.get());
  Array update = mx::multiply(ratio.get(), k.step_size.get());
  Array p32 = mx::astype(p.get(), MLX_FLOAT32);
  Array decayed = mx::multiply(p32.get(), k.decay.get());
  Array next = mx::subtract(decayed.get(), update.get());
  p = mx::astype(next.get(), mx::dtype_of(p.get()));
}

}  // namespace

UpdateResult LoraOptimizer::apply(Model& model, const AdamWOptions& o) {
  if (grads_.empty()) throw std::runtime_error("no gradients to apply: accumulate a batch first");
  UpdateResult result;
  result.loss_sum = loss_sum_;
  result.tokens = tokens_;
  auto& params = model.lora_params();
  if (tokens_ <= 0) {
    // Nothing supervised: nothing to learn from, and dividing by zero would poison the moments.
    result.skipped = true;
    clear_gradients();
    return result;
  }
  const float inv_tokens = static_cast<float>(1.0 / tokens_);
  result.grad_norm = scaled_grad_norm(grads_, inv_tokens);
  if (!std::isfinite(result.grad_norm) || !std::isfinite(result.loss_sum)) {
    result.skipped = true;
    clear_gradients();
    return result;
  }
  float clip = 1.0f;
  if (o.max_grad_norm > 0 && result.grad_norm > o.max_grad_norm) {
    clip = static_cast<float>(o.max_grad_norm / (result.grad_norm + 1e-6));
  }
  if (m_.empty()) {
    for (const auto& p : params) {
      m_.push_back(mx::zeros(mx::shape_of(p.get()), MLX_FLOAT32));
      v_.push_back(mx::zeros(mx::shape_of(p.get()), MLX_FLOAT32));
    }
  }
  ++step_;
  const AdamWScalars k = adamw_scalars(o, inv_tokens, clip, step_);
  // Parameter by parameter, each gradient freed once used: the peak is the state plus one
  // parameter's temporaries, not every parameter's old and new values side by side.
  for (size_t i = 0; i < params.size(); ++i) {
    adamw_update(params[i], m_[i], v_[i], grads_[i].get(), k);
    mx::eval({params[i].get(), m_[i].get(), v_[i].get()});
    grads_[i].reset();
  }
  clear_gradients();
  release_free_heap();
  return result;
}

std::vector<std::pair<std::string, mlx_array>> LoraOptimizer::state(const Model& model) const {
  std::vector<std::pair<std::string, mlx_array>> out;
  for (size_t i = 0; i < m_.size(); ++i) {
    out.emplace_back("m." + model.lora_names()[i], m_[i].get());
    out.emplace_back("v." + model.lora_names()[i], v_[i].get());
  }
  return out;
}

void LoraOptimizer::set_state(const Model& model, const std::vector<std::pair<std::string, Array>>& state,
                              int64_t step) {
  const auto& names = model.lora_names();
  std::vector<Array> m(names.size()), v(names.size());
  for (const auto& [key, value] : state) {
    const bool is_m = key.rfind("m.", 0) == 0, is_v = key.rfind("v.", 0) == 0;
    if (!is_m && !is_v) throw std::runtime_error("unexpected optimizer state entry '" + key + "'");
    const std::string name = key.substr(2);
    size_t i = 0;
    while (i < names.size() && names[i] != name) ++i;
    if (i == names.size()) throw std::runtime_error("optimizer state for unknown parameter '" + name + "'");
    if (mx::shape_of(value.get()) != mx::shape_of(model.lora_views()[i])) {
      throw std::runtime_error("optimizer state '" + key + "' does not match its parameter's shape");
    }
    (is_m ? m : v)[i] = mx::astype(value.get(), MLX_FLOAT32);
  }
  if (!state.empty()) {
    for (size_t i = 0; i < names.size(); ++i) {
      if (m[i].empty() || v[i].empty()) throw std::runtime_error("optimizer state lacks moments for '" + names[i] + "'");
    }
  }
  std::vector<mlx_array> views;
  for (size_t i = 0; i < m.size(); ++i) {
    if (!m[i].empty()) views.push_back(m[i].get());
    if (!v[i].empty()) views.push_back(v[i].get());
  }
  if (!views.empty()) mx::eval(views);
  m_ = state.empty() ? std::vector<Array>{} : std::move(m);
  v_ = state.empty() ? std::vector<Array>{} : std::move(v);
  step_ = step;
  clear_gradients();
}

}  // namespace mlxq::model
