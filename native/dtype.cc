#include "dtype.h"

#include <stdexcept>

namespace mlxq {
namespace {

struct Entry {
  const char* name;
  mlx_dtype dtype;
};

constexpr Entry kDtypes[] = {
    {"bool", MLX_BOOL},       {"uint8", MLX_UINT8},     {"uint16", MLX_UINT16},   {"uint32", MLX_UINT32},
    {"uint64", MLX_UINT64},   {"int8", MLX_INT8},       {"int16", MLX_INT16},     {"int32", MLX_INT32},
    {"int64", MLX_INT64},     {"float16", MLX_FLOAT16}, {"float32", MLX_FLOAT32}, {"float64", MLX_FLOAT64},
    {"bfloat16", MLX_BFLOAT16}, {"complex64", MLX_COMPLEX64},
};

}  // namespace

mlx_dtype dtype_from_name(const std::string& name) {
  for (const auto& e : kDtypes) {
    if (name == e.name) return e.dtype;
  }
  throw std::invalid_argument("unknown dtype '" + name + "'");
}

const char* dtype_name(mlx_dtype dtype) {
  for (const auto& e : kDtypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "unknown";
}

}  // namespace mlxq
