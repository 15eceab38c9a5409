// Loss and LoRA gradients through mlx_value_and_grad: the closure's inputs are exactly the LoRA
// parameters; the frozen (quantized) base and the batch are captured, never differentiated.
#include <memory>
#include <vector>

#include "model/llama.h"
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

}  // namespace

Model::LossAndGrads Model::loss_and_grads(const Batch& batch, const mlx_array targets, const mlx_array mask,
                                          const mlx_array dropout_key, bool checkpoint) const {
  if (lora_params_.empty()) throw std::runtime_error("the model has no LoRA parameters to differentiate");
  auto* payload = new LossPayload{this,
                                  mx::ref(batch.tokens),
                                  ref_or_empty(batch.positions),
                                  ref_or_empty(batch.segments),
                                  mx::ref(targets),
                                  mx::ref(mask),
                                  ref_or_empty(dropout_key),
                                  checkpoint};
  Closure fn(mlx_closure_new_func_payload(&run_loss, payload, [](void* p) { delete static_cast<LossPayload*>(p); }));
  std::vector<int> argnums(lora_params_.size());
  for (size_t i = 0; i < argnums.size(); ++i) argnums[i] = static_cast<int>(i);
  ClosureValueAndGrad vag;
  check(mlx_value_and_grad(vag.out(), fn.get(), argnums.data(), argnums.size()), "mlx_value_and_grad");
  std::vector<mlx_array> params = lora_views();
  VectorArray inputs(mlx_vector_array_new_data(params.data(), params.size()));
  VectorArray values(mlx_vector_array_new());
  VectorArray grads(mlx_vector_array_new());
  check(mlx_closure_value_and_grad_apply(values.out(), grads.out(), vag.get(), inputs.get()),
        "mlx_closure_value_and_grad_apply");
  LossAndGrads result;
  check(mlx_vector_array_get(result.loss.out(), values.get(), 0), "mlx_vector_array_get");
  check(mlx_vector_array_get(result.count.out(), values.get(), 1), "mlx_vector_array_get");
  for (size_t i = 0; i < mlx_vector_array_size(grads.get()); ++i) {
    Array g;
    check(mlx_vector_array_get(g.out(), grads.get(), i), "mlx_vector_array_get");
    result.grads.push_back(std::move(g));
  }
  return result;
}

}  // namespace mlxq::model
