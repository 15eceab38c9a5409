// Per-environment state of the addon (one per Node environment, worker threads included).
#pragma once

#include <napi.h>

#include <memory>

#include "mlx_thread.h"

namespace mlxq {

struct AddonState {
  std::shared_ptr<MlxThread> thread;
  // Constructors are per environment: a worker's Init must not replace the main thread's, and
  // each reference dies with its own environment.
  Napi::FunctionReference tensor_constructor;
  Napi::FunctionReference model_constructor;
  Napi::FunctionReference generator_constructor;
};

AddonState& addon_state(Napi::Env env);

/** JS thread: queue MLX work for this environment's MLX thread. */
inline Napi::Promise run_on_mlx(Napi::Env env, MlxThread::Work work) {
  return addon_state(env).thread->submit(env, std::move(work));
}

}  // namespace mlxq
