#include "mx.h"

#include <cstring>

namespace mlxq::mx {
namespace {

thread_local mlx_stream current_stream{};

mlx_optional_int opt(int v) { return mlx_optional_int{v, true}; }

VectorArray vector_of(std::initializer_list<mlx_array> arrays) {
  std::vector<mlx_array> v(arrays);
  return VectorArray(mlx_vector_array_new_data(v.data(), v.size()));
}

}  // namespace

mlx_stream stream() { return current_stream; }
void set_stream(mlx_stream s) { current_stream = s; }

Array from_data(const void* data, const Shape& shape, mlx_dtype dtype) {
  Array a(mlx_array_new_data(data, shape.data(), static_cast<int>(shape.size()), dtype));
  if (a.empty()) check(1, "mlx_array_new_data");
  return a;
}

Array ref(const mlx_array a) {
  Array out(mlx_array_new());
  check(mlx_array_set(out.out(), a), "mlx_array_set");
  return out;
}

Shape shape_of(const mlx_array a) {
  const int* s = mlx_array_shape(a);
  return Shape(s, s + mlx_array_ndim(a));
}

#define MLXQ_UNARY(name)                                          \
  Array name(const mlx_array a) {                                 \
    Array out;                                                    \
    check(mlx_##name(out.out(), a, stream()), "mlx_" #name);      \
    return out;                                                   \
  }
#define MLXQ_BINARY(name)                                         \
  Array name(const mlx_array a, const mlx_array b) {              \
    Array out;                                                    \
    check(mlx_##name(out.out(), a, b, stream()), "mlx_" #name);   \
    return out;                                                   \
  }
MLXQ_UNARY(exp)
MLXQ_UNARY(log)
MLXQ_UNARY(sigmoid)
MLXQ_UNARY(negative)
MLXQ_UNARY(square)
MLXQ_UNARY(sqrt)
MLXQ_UNARY(stop_gradient)
MLXQ_UNARY(isfinite)
MLXQ_UNARY(cos)
MLXQ_UNARY(sin)
MLXQ_UNARY(abs)
MLXQ_BINARY(add)
MLXQ_BINARY(subtract)
MLXQ_BINARY(multiply)
MLXQ_BINARY(divide)
MLXQ_BINARY(matmul)
MLXQ_BINARY(maximum)
MLXQ_BINARY(minimum)
MLXQ_BINARY(equal)
MLXQ_BINARY(less)
MLXQ_BINARY(less_equal)
MLXQ_BINARY(greater_equal)
MLXQ_BINARY(logical_and)
#undef MLXQ_UNARY
#undef MLXQ_BINARY

Array astype(const mlx_array a, mlx_dtype dtype) {
  Array out;
  check(mlx_astype(out.out(), a, dtype, stream()), "mlx_astype");
  return out;
}

Array reshape(const mlx_array a, const Shape& shape) {
  Array out;
  check(mlx_reshape(out.out(), a, shape.data(), shape.size(), stream()), "mlx_reshape");
  return out;
}

Array transpose(const mlx_array a, const Shape& axes) {
  Array out;
  check(mlx_transpose_axes(out.out(), a, axes.data(), axes.size(), stream()), "mlx_transpose_axes");
  return out;
}

Array swapaxes(const mlx_array a, int axis1, int axis2) {
  Array out;
  check(mlx_swapaxes(out.out(), a, axis1, axis2, stream()), "mlx_swapaxes");
  return out;
}

Array expand_dims(const mlx_array a, int axis) {
  Array out;
  check(mlx_expand_dims(out.out(), a, axis, stream()), "mlx_expand_dims");
  return out;
}

Array squeeze(const mlx_array a, int axis) {
  Array out;
  check(mlx_squeeze_axis(out.out(), a, axis, stream()), "mlx_squeeze_axis");
  return out;
}

Array sum(const mlx_array a) {
  Array out;
  check(mlx_sum(out.out(), a, false, stream()), "mlx_sum");
  return out;
}

Array sum_axis(const mlx_array a, int axis, bool keepdims) {
  Array out;
  check(mlx_sum_axis(out.out(), a, axis, keepdims, stream()), "mlx_sum_axis");
  return out;
}

Array mean_axis(const mlx_array a, int axis, bool keepdims) {
  Array out;
  check(mlx_mean_axis(out.out(), a, axis, keepdims, stream()), "mlx_mean_axis");
  return out;
}

Array max_axis(const mlx_array a, int axis, bool keepdims) {
  Array out;
  check(mlx_max_axis(out.out(), a, axis, keepdims, stream()), "mlx_max_axis");
  return out;
}

Array logsumexp_axis(const mlx_array a, int axis, bool keepdims) {
  Array out;
  check(mlx_logsumexp_axis(out.out(), a, axis, keepdims, stream()), "mlx_logsumexp_axis");
  return out;
}

Array argmax_axis(const mlx_array a, int axis, bool keepdims) {
  Array out;
  check(mlx_argmax_axis(out.out(), a, axis, keepdims, stream()), "mlx_argmax_axis");
  return out;
}

Array softmax_axis(const mlx_array a, int axis) {
  Array out;
  check(mlx_softmax_axis(out.out(), a, axis, true, stream()), "mlx_softmax_axis");
  return out;
}

Array cumsum(const mlx_array a, int axis, bool reverse, bool inclusive) {
  Array out;
  check(mlx_cumsum(out.out(), a, axis, reverse, inclusive, stream()), "mlx_cumsum");
  return out;
}

Array sort_axis(const mlx_array a, int axis) {
  Array out;
  check(mlx_sort_axis(out.out(), a, axis, stream()), "mlx_sort_axis");
  return out;
}

Array argsort_axis(const mlx_array a, int axis) {
  Array out;
  check(mlx_argsort_axis(out.out(), a, axis, stream()), "mlx_argsort_axis");
  return out;
}

Array take_axis(const mlx_array a, const mlx_array indices, int axis) {
  Array out;
  check(mlx_take_axis(out.out(), a, indices, axis, stream()), "mlx_take_axis");
  return out;
}

Array take_along_axis(const mlx_array a, const mlx_array indices, int axis) {
  Array out;
  check(mlx_take_along_axis(out.out(), a, indices, axis, stream()), "mlx_take_along_axis");
  return out;
}

Array put_along_axis(const mlx_array a, const mlx_array indices, const mlx_array values, int axis) {
  Array out;
  check(mlx_put_along_axis(out.out(), a, indices, values, axis, stream()), "mlx_put_along_axis");
  return out;
}

Array where(const mlx_array cond, const mlx_array x, const mlx_array y) {
  Array out;
  check(mlx_where(out.out(), cond, x, y, stream()), "mlx_where");
  return out;
}

Array concatenate(std::initializer_list<mlx_array> arrays, int axis) {
  VectorArray v = vector_of(arrays);
  Array out;
  check(mlx_concatenate_axis(out.out(), v.get(), axis, stream()), "mlx_concatenate_axis");
  return out;
}

Array slice(const mlx_array a, const Shape& start, const Shape& stop) {
  Shape strides(start.size(), 1);
  Array out;
  check(mlx_slice(out.out(), a, start.data(), start.size(), stop.data(), stop.size(), strides.data(), strides.size(),
                  stream()),
        "mlx_slice");
  return out;
}

Array slice_update(const mlx_array src, const mlx_array update, const Shape& start, const Shape& stop) {
  Shape strides(start.size(), 1);
  Array out;
  check(mlx_slice_update(out.out(), src, update, start.data(), start.size(), stop.data(), stop.size(), strides.data(),
                         strides.size(), stream()),
        "mlx_slice_update");
  return out;
}

Array arange(double start, double stop, mlx_dtype dtype) {
  Array out;
  check(mlx_arange(out.out(), start, stop, 1.0, dtype, stream()), "mlx_arange");
  return out;
}

Array zeros(const Shape& shape, mlx_dtype dtype) {
  Array out;
  check(mlx_zeros(out.out(), shape.data(), shape.size(), dtype, stream()), "mlx_zeros");
  return out;
}

Array full(const Shape& shape, const mlx_array value, mlx_dtype dtype) {
  Array out;
  check(mlx_full(out.out(), shape.data(), shape.size(), value, dtype, stream()), "mlx_full");
  return out;
}

Array broadcast_to(const mlx_array a, const Shape& shape) {
  Array out;
  check(mlx_broadcast_to(out.out(), a, shape.data(), shape.size(), stream()), "mlx_broadcast_to");
  return out;
}

Array contiguous(const mlx_array a) {
  Array out;
  check(mlx_contiguous(out.out(), a, false, stream()), "mlx_contiguous");
  return out;
}

Array concatenate(const std::vector<mlx_array>& arrays, int axis) {
  VectorArray v(mlx_vector_array_new_data(arrays.data(), arrays.size()));
  Array out;
  check(mlx_concatenate_axis(out.out(), v.get(), axis, stream()), "mlx_concatenate_axis");
  return out;
}

std::vector<Array> split_sections(const mlx_array a, const Shape& indices, int axis) {
  VectorArray parts(mlx_vector_array_new());
  check(mlx_split_sections(parts.out(), a, indices.data(), indices.size(), axis, stream()), "mlx_split_sections");
  return arrays_of(parts.get());
}

Array addmm(const mlx_array c, const mlx_array a, const mlx_array b, float alpha, float beta) {
  Array out;
  check(mlx_addmm(out.out(), c, a, b, alpha, beta, stream()), "mlx_addmm");
  return out;
}

Array rms_norm(const mlx_array x, const mlx_array weight, float eps) {
  Array out;
  check(mlx_fast_rms_norm(out.out(), x, weight, eps, stream()), "mlx_fast_rms_norm");
  return out;
}

Array rope(const mlx_array x, int dims, bool traditional, float base, float scale, int offset, const mlx_array freqs) {
  Array out;
  mlx_optional_float b = freqs.ctx != nullptr ? mlx_optional_float{0.0f, false} : mlx_optional_float{base, true};
  check(mlx_fast_rope(out.out(), x, dims, traditional, b, scale, offset, freqs, stream()), "mlx_fast_rope");
  return out;
}

Array attention(const mlx_array q, const mlx_array k, const mlx_array v, float scale, const char* mask_mode,
                const mlx_array mask) {
  Array out;
  check(mlx_fast_scaled_dot_product_attention(out.out(), q, k, v, scale, mask_mode, mask, mlx_array{}, stream()),
        "mlx_fast_scaled_dot_product_attention");
  return out;
}

Array quantized_matmul(const mlx_array x, const mlx_array w, const mlx_array scales, const mlx_array biases,
                       bool transpose, int group_size, int bits) {
  Array out;
  check(mlx_quantized_matmul(out.out(), x, w, scales, biases, transpose, opt(group_size), opt(bits), "affine",
                             stream()),
        "mlx_quantized_matmul");
  return out;
}

Array dequantize(const mlx_array w, const mlx_array scales, const mlx_array biases, int group_size, int bits,
                 mlx_dtype dtype) {
  Array out;
  check(mlx_dequantize(out.out(), w, scales, biases, opt(group_size), opt(bits), "affine", mlx_array{},
                       mlx_optional_dtype{dtype, true}, stream()),
        "mlx_dequantize");
  return out;
}

std::vector<Array> quantize(const mlx_array w, int group_size, int bits) {
  VectorArray parts(mlx_vector_array_new());
  check(mlx_quantize(parts.out(), w, opt(group_size), opt(bits), "affine", mlx_array{}, stream()), "mlx_quantize");
  std::vector<Array> out;
  for (size_t i = 0; i < mlx_vector_array_size(parts.get()); ++i) {
    Array part;
    check(mlx_vector_array_get(part.out(), parts.get(), i), "mlx_vector_array_get");
    out.push_back(std::move(part));
  }
  return out;
}

Array random_key(uint64_t seed) {
  Array out;
  check(mlx_random_key(out.out(), seed), "mlx_random_key");
  return out;
}

Array random_split_num(const mlx_array key, int num) {
  Array out;
  check(mlx_random_split_num(out.out(), key, num, stream()), "mlx_random_split_num");
  return out;
}

std::pair<Array, Array> random_split(const mlx_array key) {
  Array a, b;
  check(mlx_random_split(a.out(), b.out(), key, stream()), "mlx_random_split");
  return {std::move(a), std::move(b)};
}

Array random_bernoulli(float p, const Shape& shape, const mlx_array key) {
  Array prob = scalar(p);
  Array out;
  check(mlx_random_bernoulli(out.out(), prob.get(), shape.data(), shape.size(), key, stream()), "mlx_random_bernoulli");
  return out;
}

Array random_uniform(float low, float high, const Shape& shape, mlx_dtype dtype, const mlx_array key) {
  Array lo = scalar(low), hi = scalar(high);
  Array out;
  check(mlx_random_uniform(out.out(), lo.get(), hi.get(), shape.data(), shape.size(), dtype, key, stream()),
        "mlx_random_uniform");
  return out;
}

Array random_categorical(const mlx_array logits, int axis, const mlx_array key) {
  Array out;
  check(mlx_random_categorical(out.out(), logits, axis, key, stream()), "mlx_random_categorical");
  return out;
}

void eval(std::initializer_list<mlx_array> arrays) { eval(std::vector<mlx_array>(arrays)); }

void eval(const std::vector<mlx_array>& arrays) {
  VectorArray v(mlx_vector_array_new_data(arrays.data(), arrays.size()));
  check(mlx_eval(v.get()), "mlx_eval");
}

template <>
float item<float>(const mlx_array a) {
  Array f = astype(a, MLX_FLOAT32);
  float v = 0;
  check(mlx_array_item_float32(&v, f.get()), "mlx_array_item_float32");
  return v;
}

template <>
int item<int>(const mlx_array a) {
  Array i = astype(a, MLX_INT32);
  int v = 0;
  check(mlx_array_item_int32(&v, i.get()), "mlx_array_item_int32");
  return v;
}

std::vector<Array> arrays_of(const mlx_vector_array in) {
  std::vector<Array> out(mlx_vector_array_size(in));
  for (size_t i = 0; i < out.size(); ++i) check(mlx_vector_array_get(out[i].out(), in, i), "mlx_vector_array_get");
  return out;
}

Array with_vjp(const Closure& fn, const ClosureCustom& vjp, const std::vector<mlx_array>& inputs) {
  Closure custom;
  check(mlx_custom_vjp(custom.out(), fn.get(), vjp.get()), "mlx_custom_vjp");
  VectorArray in(mlx_vector_array_new_data(inputs.data(), inputs.size()));
  VectorArray res(mlx_vector_array_new());
  check(mlx_closure_apply(res.out(), custom.get(), in.get()), "mlx_closure_apply");
  Array out;
  check(mlx_vector_array_get(out.out(), res.get(), 0), "mlx_vector_array_get");
  return out;
}

Array after(const mlx_array x, const Array& dependency) {
  if (dependency.empty()) return ref(x);
  VectorArray in(mlx_vector_array_new_data(&x, 1));
  mlx_array dep = dependency.get();
  VectorArray deps(mlx_vector_array_new_data(&dep, 1));
  VectorArray res(mlx_vector_array_new());
  check(mlx_depends(res.out(), in.get(), deps.get()), "mlx_depends");
  Array out;
  check(mlx_vector_array_get(out.out(), res.get(), 0), "mlx_vector_array_get");
  return out;
}

}  // namespace mlxq::mx
