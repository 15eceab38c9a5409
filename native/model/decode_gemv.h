// One row times a dense weight through BLAS's gemv, for one-row decode steps on the CPU.
#pragma once

#include <optional>

#include "handles.h"

namespace mlxq::model {

/**
 * MLX thread: x (one row of n float32, any shape) · wᵀ for a dense, row-contiguous float32 weight
 * w [m, n], as a [1, m] float32 array; nothing when this path does not apply (another dtype or
 * device, several rows, no cblas_sgemv in the process), and the caller uses MLX's matmul.
 *
 * Why: MLX's CPU matmul is always sgemm, and OpenBLAS's sgemm packs the whole weight before it
 * multiplies even a single row, so a decode step reads the weight twice; sgemv reads it once
 * (measured for a [32000, 512] LM head at one thread: 23 ms by sgemm, 11 ms by sgemv).
 */
std::optional<Array> cpu_gemv(const mlx_array x, const mlx_array w);

}  // namespace mlxq::model
