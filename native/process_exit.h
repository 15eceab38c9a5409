// Stopping the MLX thread before the process exits.
#pragma once

#include <napi.h>

namespace mlxq {

/**
 * On the main thread's environment: stop the MLX thread on process 'exit'. process.exit() runs no
 * environment cleanup hooks, and exit() then destroys MLX's statics under a thread still inside a
 * job (verified: SIGSEGV). Workers need nothing: their cleanup hooks run when they end.
 */
void stop_mlx_at_process_exit(Napi::Env env);

}  // namespace mlxq
