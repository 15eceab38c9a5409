// dtype names shared with TypeScript (lib/native.ts DType).
#pragma once

#include <mlx/c/array.h>

#include <string>

namespace mlxq {

/** Throws std::invalid_argument naming the unknown dtype. */
mlx_dtype dtype_from_name(const std::string& name);
const char* dtype_name(mlx_dtype dtype);

}  // namespace mlxq
