// Device and memory: which backend MLX runs on, what it holds, and its limits.
#pragma once

#include <napi.h>

namespace mlxq {

void init_device(Napi::Env env, Napi::Object exports);

}  // namespace mlxq
