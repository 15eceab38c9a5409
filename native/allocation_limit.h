// A ceiling on single allocations, checked before MLX is asked for them. MLX's CPU allocator does
// not report a failed malloc (it hands out a null buffer that the kernel then writes through), so
// an array bigger than the machine — a huge shape, a batch whose attention scores need terabytes —
// would crash the process instead of failing the call.
#pragma once

#include <mlx/c/mlx.h>

#include <cstddef>
#include <string>

namespace mlxq {

/** Bytes of physical memory: no single array can be larger. */
double allocation_ceiling();

/** Throws std::length_error (a RangeError in JS) naming `what` if `bytes` exceeds the ceiling. */
void check_allocatable(double bytes, const std::string& what);

/** Bytes an array's buffer needs, from its shape (in floating point: the product may not fit 64 bits). */
double array_bytes(const mlx_array a);

}  // namespace mlxq
