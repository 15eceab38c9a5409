#include "process_exit.h"

#include "guard.h"
#include "mlx_thread.h"

// libuv's, exported by the node binary; Node-API ships no uv.h, and this is the only uv call.
extern "C" struct uv_loop_s* uv_default_loop(void);

namespace mlxq {
namespace {

Napi::Value StopMlxThread(const Napi::CallbackInfo& info) {
  MlxThread::shared().shutdown();
  return info.Env().Undefined();
}

}  // namespace

void stop_mlx_at_process_exit(Napi::Env env) {
  struct uv_loop_s* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "napi_get_uv_event_loop failed");
  // Only the main thread runs on libuv's default loop; a worker's 'exit' is not the process's.
  if (loop != uv_default_loop()) return;
  Napi::Object process = env.Global().Get("process").As<Napi::Object>();
  Napi::Function on = process.Get("on").As<Napi::Function>();
  on.Call(process, {Napi::String::New(env, "exit"),
                    Napi::Function::New<guarded<StopMlxThread>>(env, "mlxQloraStopMlxThread")});
}

}  // namespace mlxq
