// Gradient checkpointing: each decoder block becomes an mlx_checkpoint closure whose explicit
// inputs are the hidden state and that block's LoRA parameters (custom_vjp differentiates only
// explicit inputs), so its activations are recomputed in the backward pass instead of kept.
// When even the blocks' inputs would be large, runs of blocks are checkpointed around their
// checkpointed blocks: the backward pass recomputes a run, keeping only its blocks' inputs, then
// each block again (one more forward pass, √layers inputs held instead of all of them).
#include "model/checkpoint.h"

#include <cmath>
#include <cstdlib>
#include <memory>
#include <vector>

#include "mx.h"

namespace mlxq::model {
namespace {

struct RunPayload {
  const Model* model;
  int first, last;
  /** Whether each block of the run is itself checkpointed (the run being an outer checkpoint). */
  bool nested;
  std::shared_ptr<const Model::BlockContext> ctx;
  size_t lora_size;
  /** Positions in the full LoRA list of the run's parameters, in input order after h. */
  std::vector<int> slots;
};

int run_blocks(mlx_vector_array* out, const mlx_vector_array in, void* raw) {
  auto* p = static_cast<RunPayload*>(raw);
  try {
    auto inputs = mx::arrays_of(in);
    std::vector<mlx_array> lora(p->lora_size, mlx_array{});
    for (size_t i = 0; i < p->slots.size(); ++i) lora[p->slots[i]] = inputs[i + 1].get();
    const std::vector<mlx_array>* adapters = p->lora_size ? &lora : nullptr;
    Array h = mx::ref(inputs[0].get());
    for (int i = p->first; i < p->last; ++i) {
      h = p->nested ? checkpointed_run(*p->model, i, i + 1, false, h.get(), p->ctx, adapters)
                    : p->model->block(i, h.get(), *p->ctx, adapters);
    }
    mlx_array r = h.get();
    *out = mlx_vector_array_new_data(&r, 1);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

}  // namespace

Array checkpointed_run(const Model& model, int first, int last, bool nested, const mlx_array h,
                       std::shared_ptr<const Model::BlockContext> ctx, const std::vector<mlx_array>* lora) {
  auto* payload = new RunPayload{&model, first, last, nested, std::move(ctx), lora ? lora->size() : 0, {}};
  std::vector<mlx_array> inputs{h};
  for (int i = first; lora != nullptr && i < last; ++i) {
    for (const auto& l : model.layer(i).proj) {
      if (l.lora_index < 0) continue;
      for (int j : {l.lora_index, l.lora_index + 1}) {
        payload->slots.push_back(j);
        inputs.push_back((*lora)[j]);
      }
    }
  }
  Closure fn(mlx_closure_new_func_payload(&run_blocks, payload, [](void* p) { delete static_cast<RunPayload*>(p); }));
  Closure ckpt;
  check(mlx_checkpoint(ckpt.out(), fn.get()), "mlx_checkpoint");
  VectorArray in(mlx_vector_array_new_data(inputs.data(), inputs.size()));
  VectorArray out(mlx_vector_array_new());
  check(mlx_closure_apply(out.out(), ckpt.get(), in.get()), "mlx_closure_apply");
  Array result;
  check(mlx_vector_array_get(result.out(), out.get(), 0), "mlx_vector_array_get");
  return result;
}

int checkpoint_run_length(int layers, size_t block_input_bytes) {
  // Blocks' inputs above this are held √layers at a time (MLXQ_CHECKPOINT_NEST_BYTES in tests).
  constexpr size_t kNestAbove = size_t(512) << 20;
  const char* v = std::getenv("MLXQ_CHECKPOINT_NEST_BYTES");
  const long long configured = v ? std::atoll(v) : 0;
  const size_t limit = configured > 0 ? static_cast<size_t>(configured) : kNestAbove;
  if (layers < 4 || block_input_bytes * static_cast<size_t>(layers) <= limit) return 1;
  return static_cast<int>(std::ceil(std::sqrt(static_cast<double>(layers))));
}

}  // namespace mlxq::model
