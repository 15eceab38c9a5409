// Per-environment state of the addon (one per Node environment, worker threads included).
#pragma once

#include <napi.h>

#include <memory>

#include "mlx_client.h"

namespace mlxq {

struct AddonState {
  // This environment's way to the process-wide MLX thread.
  std::shared_ptr<MlxClient> mlx;
  // Constructors are per environment: a worker's Init must not replace the main thread's, and
  // each reference dies with its own environment.
  Napi::FunctionReference tensor_constructor;
  Napi::FunctionReference model_constructor;
  Napi::FunctionReference generator_constructor;
};

AddonState& addon_state(Napi::Env env);

/** JS thread: queue MLX work for the MLX thread; the Promise settles on this environment. */
inline Napi::Promise run_on_mlx(Napi::Env env, MlxThread::Work work) {
  return addon_state(env).mlx->submit(env, std::move(work));
}

/** Any thread, any time (finalizers included): release something on the MLX thread. */
inline void release_on_mlx(std::function<void()> release) { MlxThread::shared().post(std::move(release)); }

}  // namespace mlxq
