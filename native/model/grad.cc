// Loss and LoRA gradients through mlx_value_and_grad: the closure's inputs are exactly the LoRA
// parameters; the frozen (quantized) base and the batch are captured, never differentiated.
#include <memory>
#include <vector>

#include "model/llama.h"
#include "model/phase_probe.h"
#include "mx.h"

namespace mlxq::model {
namespace {

struct LossPayload {
  const Model* model;
  Array tokens, positions, segments, targets, mask, dropout_key;
  bool checkpoint;
};

mlx_array view(const Array& a) { return a.empty() ? mlx_array{} : a.get(); }

int run_loss(mlx_vector_array* out, const mlx_vector_array in, void* raw) {
  auto* p = static_cast<LossPayload*>(raw);
  try {
    const size_t n = mlx_vector_array_size(in);
    std::vector<Array> params(n);
    std::vector<mlx_array> lora(n);
    for (size_t i = 0; i < n; ++i) {
      check(mlx_vector_array_get(params[i].out(), in, i), "mlx_vector_array_get");
      lora[i] = params[i].get();
    }
    Batch batch{p->tokens.get(), view(p->positions), view(p->segments)};
    ForwardOptions options;
    options.lora = &lora;
    options.dropout_key = view(p->dropout_key);
    options.checkpoint = p->checkpoint;
    options.differentiable = true;
    auto [loss, count] = p->model->loss(batch, p->targets.get(), p->mask.get(), options);
    mlx_array outs[2] = {loss.get(), count.get()};
    *out = mlx_vector_array_new_data(outs, 2);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

Array ref_or_empty(const mlx_array a) { return a.ctx == nullptr ? Array() : mx::ref(a); }

/** value_and_grad of the loss at LoRA parameters `params` (the model's own, or a compiled trace's inputs). */
Model::LossAndGrads value_and_grads(const Model* model, const Batch& batch, const mlx_array targets,
                                    const mlx_array mask, const mlx_array dropout_key, bool checkpoint,
                                    const std::vector<mlx_array>& params) {
  auto* payload = new LossPayload{model,
                                  mx::ref(batch.tokens),
                                  ref_or_empty(batch.positions),
                                  ref_or_empty(batch.segments),
                                  mx::ref(targets),
                                  mx::ref(mask),
                                  ref_or_empty(dropout_key),
                                  checkpoint};
  Closure fn(mlx_closure_new_func_payload(&run_loss, payload, [](void* p) { delete static_cast<LossPayload*>(p); }));
  std::vector<int> argnums(params.size());
  for (size_t i = 0; i < argnums.size(); ++i) argnums[i] = static_cast<int>(i);
  ClosureValueAndGrad vag;
  check(mlx_value_and_grad(vag.out(), fn.get(), argnums.data(), argnums.size()), "mlx_value_and_grad");
  VectorArray inputs(mlx_vector_array_new_data(params.data(), params.size()));
  VectorArray values(mlx_vector_array_new());
  VectorArray grads(mlx_vector_array_new());
  check(mlx_closure_value_and_grad_apply(values.out(), grads.out(), vag.get(), inputs.get()),
        "mlx_closure_value_and_grad_apply");
  Model::LossAndGrads result;
  check(mlx_vector_array_get(result.loss.out(), values.get(), 0), "mlx_vector_array_get");
  check(mlx_vector_array_get(result.count.out(), values.get(), 1), "mlx_vector_array_get");
  for (size_t i = 0; i < mlx_vector_array_size(grads.get()); ++i) {
    Array g;
    check(mlx_vector_array_get(g.out(), grads.get(), i), "mlx_vector_array_get");
    result.grads.push_back(std::move(g));
  }
  return result;
}

enum StepLayout : int { kCheckpoint = 1, kPositions = 2, kSegments = 4, kDropout = 8 };

struct StepPayload {
  const Model* model;
  int layout;
  size_t lora_count;
};

/** Inputs [LoRA params…, tokens, targets, mask, positions?, segments?, dropout key?] → [loss, count, grads…]. */
int run_step(mlx_vector_array* out, const mlx_vector_array in, void* raw) {
  auto* p = static_cast<StepPayload*>(raw);
  try {
    std::vector<Array> a(mlx_vector_array_size(in));
    for (size_t i = 0; i < a.size(); ++i) check(mlx_vector_array_get(a[i].out(), in, i), "mlx_vector_array_get");
    std::vector<mlx_array> params;
    for (size_t i = 0; i < p->lora_count; ++i) params.push_back(a[i].get());
    size_t next = p->lora_count + 3;
    auto optional = [&](int flag) { return (p->layout & flag) ? a[next++].get() : mlx_array{}; };
    Batch batch{a[p->lora_count].get(), optional(kPositions), optional(kSegments)};
    const mlx_array key = optional(kDropout);
    auto r = value_and_grads(p->model, batch, a[p->lora_count + 1].get(), a[p->lora_count + 2].get(), key,
                             (p->layout & kCheckpoint) != 0, params);
    std::vector<mlx_array> outs{r.loss.get(), r.count.get()};
    for (const auto& g : r.grads) outs.push_back(g.get());
    *out = mlx_vector_array_new_data(outs.data(), outs.size());
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

}  // namespace

Model::LossAndGrads Model::loss_and_grads(const Batch& batch, const mlx_array targets, const mlx_array mask,
                                          const mlx_array dropout_key, bool checkpoint) const {
  if (lora_params_.empty()) throw std::runtime_error("the model has no LoRA parameters to differentiate");
  // The profiler evaluates inside the forward pass, which a compiled trace cannot.
  if (build_.compile_step && active_probe() == nullptr) {
    return compiled_loss_and_grads(batch, targets, mask, dropout_key, checkpoint);
  }
  return value_and_grads(this, batch, targets, mask, dropout_key, checkpoint, lora_views());
}

Model::LossAndGrads Model::compiled_loss_and_grads(const Batch& batch, const mlx_array targets, const mlx_array mask,
                                                   const mlx_array dropout_key, bool checkpoint) const {
  const int layout = (checkpoint ? kCheckpoint : 0) | (batch.positions.ctx ? kPositions : 0) |
                     (batch.segments.ctx ? kSegments : 0) | (dropout_key.ctx ? kDropout : 0);
  auto it = compiled_steps_.find(layout);
  if (it == compiled_steps_.end()) {
    auto* payload = new StepPayload{this, layout, lora_params_.size()};
    Closure plain(mlx_closure_new_func_payload(&run_step, payload, [](void* p) { delete static_cast<StepPayload*>(p); }));
    Closure compiled;
    check(mlx_compile(compiled.out(), plain.get(), false), "mlx_compile");
    it = compiled_steps_.emplace(layout, std::move(compiled)).first;
  }
  std::vector<mlx_array> in = lora_views();
  for (mlx_array a : {batch.tokens, targets, mask, batch.positions, batch.segments, dropout_key}) {
    if (a.ctx != nullptr) in.push_back(a);
  }
  VectorArray inputs(mlx_vector_array_new_data(in.data(), in.size()));
  VectorArray res(mlx_vector_array_new());
  check(mlx_closure_apply(res.out(), it->second.get(), inputs.get()), "mlx_closure_apply");
  LossAndGrads result;
  check(mlx_vector_array_get(result.loss.out(), res.get(), 0), "mlx_vector_array_get");
  check(mlx_vector_array_get(result.count.out(), res.get(), 1), "mlx_vector_array_get");
  for (size_t i = 2; i < mlx_vector_array_size(res.get()); ++i) {
    Array g;
    check(mlx_vector_array_get(g.out(), res.get(), i), "mlx_vector_array_get");
    result.grads.push_back(std::move(g));
  }
  return result;
}

}  // namespace mlxq::model
