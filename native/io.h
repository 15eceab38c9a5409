// Files: safetensors load/save through mlx-c, and tensors read from a byte range of any file
// (how the GGUF reader hands tensor data to MLX without passing it through JS).
#pragma once

#include <napi.h>

namespace mlxq {

void init_io(Napi::Env env, Napi::Object exports);

}  // namespace mlxq
