#include "ops.h"

#include <cstring>

#include "args.h"
#include "dtype.h"
#include "errors.h"
#include "guard.h"
#include "tensor.h"

namespace mlxq {
namespace {

size_t element_count(const std::vector<int>& shape) {
  size_t n = 1;
  for (int d : shape) n *= static_cast<size_t>(d);
  return n;
}

/** An optional small integer argument (group size, bits): absent, or in [1, 2^31). */
mlx_optional_int optional_int_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  std::optional<int64_t> v = args::optional_int_at(info, i, name);
  if (!v) return mlx_optional_int{0, false};
  if (*v < 1 || *v > 2147483647) throw Napi::RangeError::New(info.Env(), std::string("argument '") + name + "' must be a positive integer");
  return mlx_optional_int{static_cast<int>(*v), true};
}

/** Bytes of a TypedArray, DataView or Buffer argument. */
std::pair<const uint8_t*, size_t> bytes_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    auto* base = static_cast<const uint8_t*>(ta.ArrayBuffer().Data());
    return {base + ta.ByteOffset(), ta.ByteLength()};
  }
  if (v.IsDataView()) {
    auto dv = v.As<Napi::DataView>();
    auto* base = static_cast<const uint8_t*>(dv.ArrayBuffer().Data());
    return {base + dv.ByteOffset(), dv.ByteLength()};
  }
  throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be a TypedArray");
}

mlx_dtype dtype_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  try {
    return dtype_from_name(args::string_at(info, i, name));
  } catch (const std::invalid_argument& e) {
    throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "': " + e.what());
  }
}

// fromBytes(data: TypedArray, shape: number[], dtype: string): Promise<Tensor>
Napi::Value FromBytes(const Napi::CallbackInfo& info) {
  auto [data, length] = bytes_at(info, 0, "data");
  std::vector<int> shape = args::shape_at(info, 1, "shape");
  mlx_dtype dtype = dtype_at(info, 2, "dtype");
  size_t expected = element_count(shape) * mlx_dtype_size(dtype);
  if (expected != length) {
    throw Napi::RangeError::New(info.Env(), "data has " + std::to_string(length) + " bytes but shape and dtype need " +
                                                std::to_string(expected));
  }
  // Copied now: JS may change or free its buffer before the job runs.
  auto copy = std::make_shared<std::vector<uint8_t>>(data, data + length);
  return run_on_mlx(info.Env(), [copy, shape, dtype](MlxThread&) {
    Array array(mlx_array_new_data(copy->data(), shape.data(), static_cast<int>(shape.size()), dtype));
    if (array.empty()) check(1, "mlx_array_new_data");
    return settle_tensor(evaluated(std::move(array)));
  });
}

// toBytes(t: Tensor): Promise<ArrayBuffer>, row-major whatever the array's strides
Napi::Value ToBytes(const Napi::CallbackInfo& info) {
  ArrayRef box = Tensor::From(info[0], "tensor");
  return run_on_mlx(info.Env(), [box](MlxThread& mlx) -> MlxThread::Settle {
    Array contiguous;
    check(mlx_contiguous(contiguous.out(), box->array.get(), false, mlx.stream()), "mlx_contiguous");
    check(mlx_array_eval(contiguous.get()), "mlx_array_eval");
    const size_t n = mlx_array_nbytes(contiguous.get());
    auto bytes = std::make_shared<std::vector<uint8_t>>(n);
    if (n > 0) std::memcpy(bytes->data(), mlx_array_data_uint8(contiguous.get()), n);
    return [bytes](Napi::Env env) -> Napi::Value {
      Napi::ArrayBuffer out = Napi::ArrayBuffer::New(env, bytes->size());
      if (!bytes->empty()) std::memcpy(out.Data(), bytes->data(), bytes->size());
      return out;
    };
  });
}

using Binary = int (*)(mlx_array*, const mlx_array, const mlx_array, const mlx_stream);

template <Binary Op>
Napi::Value BinaryOp(const Napi::CallbackInfo& info) {
  ArrayRef a = Tensor::From(info[0], "a");
  ArrayRef b = Tensor::From(info[1], "b");
  return run_on_mlx(info.Env(), [a, b](MlxThread& mlx) {
    Array out;
    check(Op(out.out(), a->array.get(), b->array.get(), mlx.stream()), "binary op");
    return settle_tensor(evaluated(std::move(out)));
  });
}

// astype(t, dtype)
Napi::Value AsType(const Napi::CallbackInfo& info) {
  ArrayRef a = Tensor::From(info[0], "tensor");
  mlx_dtype dtype = dtype_at(info, 1, "dtype");
  return run_on_mlx(info.Env(), [a, dtype](MlxThread& mlx) {
    Array out;
    check(mlx_astype(out.out(), a->array.get(), dtype, mlx.stream()), "mlx_astype");
    return settle_tensor(evaluated(std::move(out)));
  });
}

// quantize(w, groupSize?, bits?): Promise<[wq, scales, biases]> (affine mode)
Napi::Value Quantize(const Napi::CallbackInfo& info) {
  ArrayRef w = Tensor::From(info[0], "w");
  mlx_optional_int group = optional_int_at(info, 1, "groupSize");
  mlx_optional_int bits = optional_int_at(info, 2, "bits");
  return run_on_mlx(info.Env(), [w, group, bits](MlxThread& mlx) -> MlxThread::Settle {
    VectorArray parts(mlx_vector_array_new());
    check(mlx_quantize(parts.out(), w->array.get(), group, bits, "affine", mlx_array{}, mlx.stream()), "mlx_quantize");
    std::vector<ArrayRef> boxes;
    for (size_t i = 0; i < mlx_vector_array_size(parts.get()); ++i) {
      Array part;
      check(mlx_vector_array_get(part.out(), parts.get(), i), "mlx_vector_array_get");
      boxes.push_back(evaluated(std::move(part)));
    }
    return [boxes](Napi::Env env) -> Napi::Value {
      Napi::Array out = Napi::Array::New(env, boxes.size());
      for (size_t i = 0; i < boxes.size(); ++i) out.Set(static_cast<uint32_t>(i), Tensor::Wrap(env, boxes[i]));
      return out;
    };
  });
}

// dequantize(wq, scales, biases, groupSize?, bits?, dtype?)
Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  ArrayRef wq = Tensor::From(info[0], "wq");
  ArrayRef scales = Tensor::From(info[1], "scales");
  ArrayRef biases = Tensor::From(info[2], "biases");
  mlx_optional_int group = optional_int_at(info, 3, "groupSize");
  mlx_optional_int bits = optional_int_at(info, 4, "bits");
  mlx_optional_dtype dtype{MLX_FLOAT32, false};
  if (info.Length() > 5 && !info[5].IsUndefined() && !info[5].IsNull()) dtype = {dtype_at(info, 5, "dtype"), true};
  return run_on_mlx(info.Env(), [wq, scales, biases, group, bits, dtype](MlxThread& mlx) {
    Array out;
    check(mlx_dequantize(out.out(), wq->array.get(), scales->array.get(), biases->array.get(), group, bits, "affine",
                         mlx_array{}, dtype, mlx.stream()),
          "mlx_dequantize");
    return settle_tensor(evaluated(std::move(out)));
  });
}

// quantizedMatmul(x, wq, scales, biases, transpose, groupSize?, bits?)
Napi::Value QuantizedMatmul(const Napi::CallbackInfo& info) {
  ArrayRef x = Tensor::From(info[0], "x");
  ArrayRef wq = Tensor::From(info[1], "wq");
  ArrayRef scales = Tensor::From(info[2], "scales");
  ArrayRef biases = Tensor::From(info[3], "biases");
  bool transpose = args::bool_at(info, 4, "transpose");
  mlx_optional_int group = optional_int_at(info, 5, "groupSize");
  mlx_optional_int bits = optional_int_at(info, 6, "bits");
  return run_on_mlx(info.Env(), [x, wq, scales, biases, transpose, group, bits](MlxThread& mlx) {
    Array out;
    check(mlx_quantized_matmul(out.out(), x->array.get(), wq->array.get(), scales->array.get(), biases->array.get(),
                               transpose, group, bits, "affine", mlx.stream()),
          "mlx_quantized_matmul");
    return settle_tensor(evaluated(std::move(out)));
  });
}

// randomNormal(shape, dtype, seed, loc?, scale?): the same seed gives the same values
Napi::Value RandomNormal(const Napi::CallbackInfo& info) {
  std::vector<int> shape = args::shape_at(info, 0, "shape");
  mlx_dtype dtype = dtype_at(info, 1, "dtype");
  int64_t seed = args::int_at(info, 2, "seed");
  auto optional_number = [&](size_t i, const char* name, float fallback) {
    return info.Length() > i && !info[i].IsUndefined() ? static_cast<float>(args::number_at(info, i, name)) : fallback;
  };
  const float loc = optional_number(3, "loc", 0.0f);
  const float scale = optional_number(4, "scale", 1.0f);
  return run_on_mlx(info.Env(), [shape, dtype, seed, loc, scale](MlxThread& mlx) {
    Array key;
    check(mlx_random_key(key.out(), static_cast<uint64_t>(seed)), "mlx_random_key");
    Array out;
    check(mlx_random_normal(out.out(), shape.data(), shape.size(), dtype, loc, scale, key.get(), mlx.stream()),
          "mlx_random_normal");
    return settle_tensor(evaluated(std::move(out)));
  });
}

}  // namespace

void init_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("fromBytes", Napi::Function::New<guarded<FromBytes>>(env, "fromBytes"));
  exports.Set("toBytes", Napi::Function::New<guarded<ToBytes>>(env, "toBytes"));
  exports.Set("matmul", Napi::Function::New<guarded<BinaryOp<mlx_matmul>>>(env, "matmul"));
  exports.Set("add", Napi::Function::New<guarded<BinaryOp<mlx_add>>>(env, "add"));
  exports.Set("astype", Napi::Function::New<guarded<AsType>>(env, "astype"));
  exports.Set("quantize", Napi::Function::New<guarded<Quantize>>(env, "quantize"));
  exports.Set("dequantize", Napi::Function::New<guarded<Dequantize>>(env, "dequantize"));
  exports.Set("quantizedMatmul", Napi::Function::New<guarded<QuantizedMatmul>>(env, "quantizedMatmul"));
  exports.Set("randomNormal", Napi::Function::New<guarded<RandomNormal>>(env, "randomNormal"));
}

}  // namespace mlxq
