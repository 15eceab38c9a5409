// Elementwise chains as mlx_compile'd kernels: MLX's CPU backend runs each plain elementwise op as
// its own single-threaded pass over memory, and compile fuses a chain into one generated kernel (on
// Metal and CUDA it generates theirs from the same graph). MLX compiles only when no input is a
// tracer: inside value_and_grad (a training step) these closures run their plain ops, so there the
// gain is the shorter hand-written gradient (SwiGLU's custom VJP, the loss's single exp), and the
// fused kernels serve evaluation and generation. Fusing the training step needs the whole step
// (value_and_grad inside) compiled.
#pragma once

#include "handles.h"
#include "model/llama.h"

namespace mlxq::model {

/**
 * Compiled closures of one model, made once on the MLX thread (MLX's compile cache is per thread)
 * and freed with the model. Each retraces once per new input shape.
 */
class CompiledOps {
 public:
  CompiledOps();
  CompiledOps(const CompiledOps&) = delete;
  CompiledOps& operator=(const CompiledOps&) = delete;

  /** silu(g)·u, whose gradient is one compiled kernel too (a custom VJP over the compiled forward). */
  Array swiglu(const mlx_array g, const mlx_array u) const;
  /** exp(z − m) for logits z [N, V] and row maxima m [N, 1], in one pass. */
  Array shifted_exp(const mlx_array z, const mlx_array m) const;
  /**
   * d loss / d logits from e = exp(z − m): e·f − w at each row's target column and e·f elsewhere,
   * with f = w / Σe per row; e [N, V], f, w, targets [N, 1], columns [1, V] int32 (0..V−1).
   */
  Array logit_grad(const mlx_array e, const mlx_array f, const mlx_array w, const mlx_array targets,
                   const mlx_array columns) const;

 private:
  Closure swiglu_;
  Closure shifted_exp_;
  Closure logit_grad_;
};

}  // namespace mlxq::model
