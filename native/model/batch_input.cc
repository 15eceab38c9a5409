#include "model/batch_input.h"

#include "mx.h"

namespace mlxq::model {
namespace {

template <typename T, typename JsArray>
std::vector<T> copy_array(const Napi::Object& obj, const char* key, napi_typedarray_type type, size_t expected,
                          bool required) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throw Napi::TypeError::New(obj.Env(), std::string("batch.") + key + " is required");
    return {};
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(obj.Env(), std::string("batch.") + key + " has the wrong typed array type");
  }
  auto arr = v.As<JsArray>();
  if (arr.ElementLength() != expected) {
    throw Napi::RangeError::New(obj.Env(), std::string("batch.") + key + " has " + std::to_string(arr.ElementLength()) +
                                               " elements, expected " + std::to_string(expected));
  }
  return std::vector<T>(arr.Data(), arr.Data() + arr.ElementLength());
}

void check_ids(const Napi::Env& env, const std::vector<int32_t>& ids, const char* key, int vocab_size) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      throw Napi::RangeError::New(env, std::string("batch.") + key + "[" + std::to_string(i) + "] is " +
                                           std::to_string(ids[i]) + ", outside the vocabulary [0, " +
                                           std::to_string(vocab_size) + ")");
    }
  }
}

}  // namespace

BatchInput BatchInput::parse(const Napi::Value& value, bool needs_targets, int vocab_size) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) throw Napi::TypeError::New(env, "batch must be an object");
  auto obj = value.As<Napi::Object>();
  Napi::Value shape = obj.Get("shape");
  if (!shape.IsArray() || shape.As<Napi::Array>().Length() != 2) {
    throw Napi::TypeError::New(env, "batch.shape must be [batch, length]");
  }
  BatchInput in;
  for (uint32_t i = 0; i < 2; ++i) {
    Napi::Value d = shape.As<Napi::Array>().Get(i);
    const double v = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : 0;
    if (!(v >= 1 && v <= 2147483647.0 && v == static_cast<double>(static_cast<int64_t>(v)))) {
      throw Napi::RangeError::New(env, "batch.shape must be two positive integers below 2^31");
    }
  }
  in.batch = shape.As<Napi::Array>().Get(0u).As<Napi::Number>().Int32Value();
  in.length = shape.As<Napi::Array>().Get(1u).As<Napi::Number>().Int32Value();
  const size_t n = static_cast<size_t>(in.batch) * static_cast<size_t>(in.length);
  in.tokens = copy_array<int32_t, Napi::Int32Array>(obj, "tokens", napi_int32_array, n, true);
  in.targets = copy_array<int32_t, Napi::Int32Array>(obj, "targets", napi_int32_array, n, needs_targets);
  in.mask = copy_array<float, Napi::Float32Array>(obj, "mask", napi_float32_array, n, needs_targets);
  in.positions = copy_array<int32_t, Napi::Int32Array>(obj, "positions", napi_int32_array, n, false);
  in.segments = copy_array<int32_t, Napi::Int32Array>(obj, "segments", napi_int32_array, n, false);
  check_ids(env, in.tokens, "tokens", vocab_size);
  check_ids(env, in.targets, "targets", vocab_size);
  return in;
}

BatchArrays::BatchArrays(const BatchInput& in) {
  const mx::Shape shape{in.batch, in.length};
  tokens = mx::from_data(in.tokens.data(), shape, MLX_INT32);
  if (!in.targets.empty()) targets = mx::from_data(in.targets.data(), shape, MLX_INT32);
  if (!in.mask.empty()) mask = mx::from_data(in.mask.data(), shape, MLX_FLOAT32);
  if (!in.positions.empty()) positions = mx::from_data(in.positions.data(), shape, MLX_INT32);
  if (!in.segments.empty()) segments = mx::from_data(in.segments.data(), shape, MLX_INT32);
}

Batch BatchArrays::view() const {
  return Batch{tokens.get(), positions.empty() ? mlx_array{} : positions.get(),
               segments.empty() ? mlx_array{} : segments.get()};
}

}  // namespace mlxq::model
