// Gradient accumulation and AdamW on the LoRA parameters, all on the MLX thread.
//
// Micro-batches add their summed-loss gradients; the update divides by the total supervised
// token count, so any split of a batch into micro-batches gives the same update. A non-finite
// gradient norm skips the update and leaves parameters and moments untouched.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "handles.h"
#include "model/llama.h"

namespace mlxq::model {

struct AdamWOptions {
  float learning_rate = 2e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  /** Clip the global gradient norm to this; 0 turns clipping off. */
  float max_grad_norm = 0.0f;
};

struct UpdateResult {
  double grad_norm = 0;  // before clipping
  double loss_sum = 0;
  double tokens = 0;
  bool skipped = false;
};

class LoraOptimizer {
 public:
  /** Adds one micro-batch's gradients; returns (summed loss, supervised tokens). */
  std::pair<double, double> accumulate(Model& model, const Batch& batch, const mlx_array targets, const mlx_array mask,
                                       const mlx_array dropout_key, bool checkpoint);
  /** Applies AdamW to the accumulated gradients and clears them. */
  UpdateResult apply(Model& model, const AdamWOptions& options);
  void clear_gradients();
  bool has_gradients() const { return !grads_.empty(); }

  int64_t step() const { return step_; }
  /** m.<name> and v.<name> for every LoRA parameter (empty before the first update). */
  std::vector<std::pair<std::string, mlx_array>> state(const Model& model) const;
  void set_state(const Model& model, const std::vector<std::pair<std::string, Array>>& state, int64_t step);

 private:
  std::vector<Array> grads_;
  double loss_sum_ = 0;
  double tokens_ = 0;
  std::vector<Array> m_;
  std::vector<Array> v_;
  int64_t step_ = 0;
};

}  // namespace mlxq::model
