#include "tensor.h"

#include "allocation_limit.h"
#include "dtype.h"
#include "errors.h"

namespace mlxq {

ArrayRef evaluated(Array&& array) {
  check_allocatable(array_bytes(array.get()), "the result");
  check(mlx_array_eval(array.get()), "mlx_array_eval");
  auto box = std::make_shared<ArrayBox>();
  const size_t ndim = mlx_array_ndim(array.get());
  const int* shape = mlx_array_shape(array.get());
  box->shape.assign(shape, shape + ndim);
  box->dtype = mlx_array_dtype(array.get());
  box->nbytes = mlx_array_nbytes(array.get());
  box->array = std::move(array);
  return box;
}

namespace {

Napi::Value ExternalMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Napi::MemoryManagement::AdjustExternalMemory(info.Env(), 0)));
}

}  // namespace

void Tensor::Init(Napi::Env env, Napi::Object exports, AddonState& state) {
  Napi::Function ctor = DefineClass(env, "Tensor",
                                    {
                                        InstanceAccessor<&Tensor::Guarded<&Tensor::Shape>>("shape"),
                                        InstanceAccessor<&Tensor::Guarded<&Tensor::Dtype>>("dtype"),
                                        InstanceAccessor<&Tensor::Guarded<&Tensor::Nbytes>>("nbytes"),
                                        InstanceAccessor<&Tensor::Guarded<&Tensor::Disposed>>("disposed"),
                                        InstanceMethod<&Tensor::Guarded<&Tensor::Dispose>>("dispose"),
                                    });
  state.tensor_constructor = Napi::Persistent(ctor);
  exports.Set("Tensor", ctor);
  // What V8 counts as external memory (the running total every tensor adjusts). Exposed because
  // process.memoryUsage().external leaves these reports out on some Node versions (20.x).
  exports.Set("externalMemory", Napi::Function::New<guarded<ExternalMemory>>(env, "externalMemory"));
}

Napi::Object Tensor::Wrap(Napi::Env env, ArrayRef box) {
  auto holder = Napi::External<ArrayRef>::New(env, new ArrayRef(std::move(box)),
                                              [](Napi::Env, ArrayRef* ref) { delete ref; });
  return addon_state(env).tensor_constructor.New({holder});
}

Tensor::Tensor(const Napi::CallbackInfo& info) try : Napi::ObjectWrap<Tensor>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "Tensor cannot be constructed directly; use tensor() or an op");
  }
  ArrayRef* ref = info[0].As<Napi::External<ArrayRef>>().Data();
  box_ = std::move(*ref);
  shape_ = box_->shape;
  dtype_ = box_->dtype;
  nbytes_ = box_->nbytes;
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), static_cast<int64_t>(nbytes_));
} catch (const Napi::Error&) {
  throw;
} catch (...) {
  throw js_error_of_current_exception(info.Env());
}

ArrayRef Tensor::From(const Napi::Value& value, const char* name) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon_state(env).tensor_constructor.Value())) {
    throw Napi::TypeError::New(env, std::string("argument '") + name + "' must be a Tensor");
  }
  Tensor* t = Unwrap(value.As<Napi::Object>());
  if (!t->box_) throw Napi::TypeError::New(env, std::string("argument '") + name + "' is a disposed Tensor");
  return t->box_;
}

void Tensor::release(Napi::Env env) {
  if (!box_) return;
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(nbytes_));
  release_on_mlx([box = std::move(box_)]() mutable { box.reset(); });
  box_.reset();
}

void Tensor::Finalize(Napi::Env env) {
  without_exceptions("releasing a Tensor", [&] { release(env); });
}

Napi::Value Tensor::Dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

Napi::Value Tensor::Shape(const Napi::CallbackInfo& info) {
  Napi::Array out = Napi::Array::New(info.Env(), shape_.size());
  for (size_t i = 0; i < shape_.size(); ++i) out.Set(static_cast<uint32_t>(i), shape_[i]);
  return out;
}

Napi::Value Tensor::Dtype(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dtype_name(dtype_)); }

Napi::Value Tensor::Nbytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(nbytes_));
}

Napi::Value Tensor::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !box_); }

}  // namespace mlxq
