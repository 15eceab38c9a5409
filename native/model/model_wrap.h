// JS classes Model and Generator over model::Model; every method queues work on the MLX thread.
#pragma once

#include <napi.h>

namespace mlxq {

void init_model(Napi::Env env, Napi::Object exports);

}  // namespace mlxq
