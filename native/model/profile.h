// One training step (loss and LoRA gradients) broken down by phase, for the profile benchmark.
#pragma once

#include <string>
#include <vector>

#include "handles.h"
#include "model/llama.h"

namespace mlxq::model {

struct PhaseCost {
  std::string name;
  int calls = 0;
  double seconds = 0;
  /** Net bytes MLX holds after the phase's evaluations minus before (its kept outputs). */
  double retained_bytes = 0;
  /** Largest rise of MLX's peak above what was held when one of its evaluations began. */
  double transient_bytes = 0;
};

struct StepProfile {
  std::vector<PhaseCost> phases;  // in first-seen order
  double loss = 0;
  double tokens = 0;
  /** The same step evaluated at once, as training runs it (after the pieced one). */
  double whole_step_seconds = 0;
  double whole_step_peak_bytes = 0;
  double peak_bytes = 0;
};

/**
 * MLX thread. Runs value_and_grad once with a probe that evaluates the forward pass phase by phase
 * (graph building between evaluations is charged to "host: graph building"), then evaluates the
 * gradients as "backward"; then runs the same step unpieced for its time and peak memory.
 */
StepProfile profile_step(const Model& model, const Batch& batch, const mlx_array targets, const mlx_array mask);

}  // namespace mlxq::model
