// Gradient checkpointing: each decoder block becomes an mlx_checkpoint closure whose explicit
// inputs are the hidden state and that block's LoRA parameters (custom_vjp differentiates only
// explicit inputs), so its activations are recomputed in the backward pass instead of kept.
#include <memory>
#include <vector>

#include "model/block_context.h"
#include "mx.h"

namespace mlxq::model {
namespace {

struct BlockPayload {
  const Model* model;
  int index;
  std::shared_ptr<const Model::BlockContext> ctx;
  size_t lora_size;
  /** Positions in the full LoRA list of this block's parameters, in input order after h. */
  std::vector<int> slots;
};

int run_block(mlx_vector_array* out, const mlx_vector_array in, void* raw) {
  auto* p = static_cast<BlockPayload*>(raw);
  try {
    Array h;
    check(mlx_vector_array_get(h.out(), in, 0), "mlx_vector_array_get");
    std::vector<Array> params(p->slots.size());
    std::vector<mlx_array> lora(p->lora_size, mlx_array{});
    for (size_t i = 0; i < p->slots.size(); ++i) {
      check(mlx_vector_array_get(params[i].out(), in, i + 1), "mlx_vector_array_get");
      lora[p->slots[i]] = params[i].get();
    }
    Array result = p->model->block(p->index, h.get(), *p->ctx, p->lora_size ? &lora : nullptr);
    mlx_array r = result.get();
    *out = mlx_vector_array_new_data(&r, 1);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

}  // namespace

Array checkpointed_block(const Model& model, int index, const mlx_array h,
                         std::shared_ptr<const Model::BlockContext> ctx, const std::vector<mlx_array>* lora) {
  auto* payload = new BlockPayload{&model, index, std::move(ctx), lora ? lora->size() : 0, {}};
  std::vector<mlx_array> inputs{h};
  if (lora != nullptr) {
    for (const auto& l : model.layer(index).proj) {
      if (l.lora_index < 0) continue;
      for (int j : {l.lora_index, l.lora_index + 1}) {
        payload->slots.push_back(j);
        inputs.push_back((*lora)[j]);
      }
    }
  }
  Closure fn(mlx_closure_new_func_payload(&run_block, payload, [](void* p) { delete static_cast<BlockPayload*>(p); }));
  Closure ckpt;
  check(mlx_checkpoint(ckpt.out(), fn.get()), "mlx_checkpoint");
  VectorArray in(mlx_vector_array_new_data(inputs.data(), inputs.size()));
  VectorArray out(mlx_vector_array_new());
  check(mlx_closure_apply(out.out(), ckpt.get(), in.get()), "mlx_closure_apply");
  Array result;
  check(mlx_vector_array_get(result.out(), out.get(), 0), "mlx_vector_array_get");
  return result;
}

}  // namespace mlxq::model
