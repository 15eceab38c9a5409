#include "model/optimizer.h"

#include <cmath>
#include <stdexcept>

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
  std::vector<Array> g(grads_.size());
  Array sq_sum = mx::scalar(0.0f);
  for (size_t i = 0; i < grads_.size(); ++i) {
    g[i] = mx::multiply(grads_[i].get(), mx::scalar(inv_tokens).get());
    Array sq = mx::square(g[i].get());
    sq_sum = mx::add(sq_sum.get(), mx::sum(sq.get()).get());
  }
  Array norm = mx::sqrt(sq_sum.get());
  result.grad_norm = mx::item<float>(norm.get());
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
  const double bc1 = 1.0 - std::pow(static_cast<double>(o.beta1), static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(static_cast<double>(o.beta2), static_cast<double>(step_));
  Array b1 = mx::scalar(o.beta1), b1c = mx::scalar(1.0f - o.beta1);
  Array b2 = mx::scalar(o.beta2), b2c = mx::scalar(1.0f - o.beta2);
  Array step_size = mx::scalar(static_cast<float>(o.learning_rate / bc1));
  Array inv_bc2_sqrt = mx::scalar(static_cast<float>(1.0 / std::sqrt(bc2)));
  Array eps = mx::scalar(o.eps);
  Array decay = mx::scalar(1.0f - o.learning_rate * o.weight_decay);
  Array clip_s = mx::scalar(clip);
  std::vector<mlx_array> outputs;
  for (size_t i = 0; i < params.size(); ++i) {
    Array gi = mx::multiply(g[i].get(), clip_s.get());
    Array m1 = mx::multiply(m_[i].get(), b1.get());
    Array m2 = mx::multiply(gi.get(), b1c.get());
    m_[i] = mx::add(m1.get(), m2.get());
    Array g2 = mx::square(gi.get());
    Array v1 = mx::multiply(v_[i].get(), b2.get());
    Array v2 = mx::multiply(g2.get(), b2c.get());
    v_[i] = mx::add(v1.get(), v2.get());
    // p ← p·(1 − lr·wd) − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
    Array root = mx::sqrt(v_[i].get());
    Array denom0 = mx::multiply(root.get(), inv_bc2_sqrt.get());
    Array denom = mx::add(denom0.get(), eps.get());
    Array ratio = mx::divide(m_[i].get(), denom.get());
    Array update = mx::multiply(ratio.get(), step_size.get());
    Array p32 = mx::astype(params[i].get(), MLX_FLOAT32);
    Array decayed = mx::multiply(p32.get(), decay.get());
    Array next = mx::subtract(decayed.get(), update.get());
    params[i] = mx::astype(next.get(), mx::dtype_of(params[i].get()));
    outputs.push_back(params[i].get());
    outputs.push_back(m_[i].get());
    outputs.push_back(v_[i].get());
  }
  mx::eval(outputs);
  clear_gradients();
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
