// Module init: the error handler first (mlx-c's default one exits the process), then this
// environment's client of the process-wide MLX thread and the exported functions.
#include <napi.h>

#include <string>

#include "addon_state.h"
#include "device.h"
#include "errors.h"
#include "guard.h"
#include "handles.h"
#include "io.h"
#include "model/model_wrap.h"
#include "ops.h"
#include "process_exit.h"
#include "quant/gguf_encode.h"
#include "tensor.h"

namespace mlxq {

AddonState& addon_state(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }

namespace {

Napi::Value MlxThreadId(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), std::to_string(MlxThread::shared().id()));
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // node-addon-api passes on only Napi::Error from here; anything else would abort the load.
  return to_js_errors(env, [&] {
    install_error_handler();
    auto* state = new AddonState();
    state->mlx = MlxClient::open(env);
    env.SetInstanceData<AddonState>(state);
    // Before instance data is finalized: no result may be delivered to a dead environment. Other
    // environments keep the thread; the last one out stops it.
    env.AddCleanupHook([state] { without_exceptions("detaching from the MLX thread", [state] { state->mlx->close(); }); });
    stop_mlx_at_process_exit(env);
    Tensor::Init(env, exports, *state);
    init_ops(env, exports);
    init_device(env, exports);
    init_io(env, exports);
    init_model(env, exports);
    init_gguf_encode(env, exports);
    // A constant string: no arrays, so reading it here breaks no threading rule.
    String version(mlx_string_new());
    check(mlx_version(version.out()), "mlx_version");
    // Synchronous, for tests and diagnostics: every environment must see the same thread.
    exports.Set("mlxThreadId", Napi::Function::New<guarded<MlxThreadId>>(env, "mlxThreadId"));
    exports.Set("mlxVersion", Napi::String::New(env, mlx_string_data(version.get())));
    return exports;
  });
}

}  // namespace mlxq

static Napi::Object InitMlxQlora(Napi::Env env, Napi::Object exports) { return mlxq::Init(env, exports); }

NODE_API_MODULE(mlx_qlora, InitMlxQlora)
