// The tensors of a safetensors file as (name, lazy array) pairs, through mlx-c. Arrays are lazy:
// each reads its bytes when evaluated.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "handles.h"

namespace mlxq {

struct SafetensorsEntries {
  std::vector<std::pair<std::string, Array>> tensors;
  std::vector<std::pair<std::string, std::string>> metadata;
};

/** `stream` must be a CPU stream (MLX's Load primitive has no GPU implementation). */
SafetensorsEntries read_safetensors(const std::string& path, mlx_stream stream);

}  // namespace mlxq
