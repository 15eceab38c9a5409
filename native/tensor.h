// Tensor: a JS handle on one MLX array. The array lives in an ArrayBox shared with queued jobs, so
// disposing a tensor that a pending job still reads is safe; the last reference is dropped on the
// MLX thread.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "addon_state.h"
#include "guard.h"
#include "handles.h"

namespace mlxq {

struct ArrayBox {
  Array array;
  std::vector<int> shape;
  mlx_dtype dtype;
  size_t nbytes;
};
using ArrayRef = std::shared_ptr<ArrayBox>;

/** MLX thread: evaluates the array (so errors surface in the job that made it) and boxes it. */
ArrayRef evaluated(Array&& array);

class Tensor : public Napi::ObjectWrap<Tensor> {
 public:
  static void Init(Napi::Env env, Napi::Object exports, AddonState& state);
  /** JS thread: a new Tensor owning `box`. */
  static Napi::Object Wrap(Napi::Env env, ArrayRef box);
  /** JS thread: the array behind a Tensor argument; throws a TypeError if it is not a live Tensor. */
  static ArrayRef From(const Napi::Value& value, const char* name);

  explicit Tensor(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override;

 private:
  template <Napi::Value (Tensor::*M)(const Napi::CallbackInfo&)>
  Napi::Value Guarded(const Napi::CallbackInfo& info) {
    return to_js_errors(info.Env(), [&] {
      // Before any member is touched: `this` may be another class's object.
      check_receiver(info, addon_state(info.Env()).tensor_constructor, "Tensor");
      return (this->*M)(info);
    });
  }
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Nbytes(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void release(Napi::Env env);

  ArrayRef box_;
  std::vector<int> shape_;
  mlx_dtype dtype_ = MLX_FLOAT32;
  size_t nbytes_ = 0;
};

/** MLX thread → JS: a Settle that wraps the box in a Tensor. */
inline MlxThread::Settle settle_tensor(ArrayRef box) {
  return [box = std::move(box)](Napi::Env env) -> Napi::Value { return Tensor::Wrap(env, box); };
}

}  // namespace mlxq
