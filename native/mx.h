// A thin functional layer over mlx-c for model code: each call checks its return code and returns
// an owning Array, on the MLX thread's current stream. Only what the model needs.
#pragma once

#include <initializer_list>
#include <vector>

#include "errors.h"
#include "handles.h"

namespace mlxq::mx {

/** The stream ops run on: set by the MLX thread for each job. */
mlx_stream stream();
void set_stream(mlx_stream s);

using Shape = std::vector<int>;

inline Array scalar(float v) { return Array(mlx_array_new_float32(v)); }
inline Array scalar_int(int v) { return Array(mlx_array_new_int(v)); }
Array from_data(const void* data, const Shape& shape, mlx_dtype dtype);
/** A new reference to the same array. */
Array ref(const mlx_array a);

Shape shape_of(const mlx_array a);
inline int dim(const mlx_array a, int axis) { return mlx_array_dim(a, axis); }
inline mlx_dtype dtype_of(const mlx_array a) { return mlx_array_dtype(a); }

#define MLXQ_UNARY(name) Array name(const mlx_array a);
#define MLXQ_BINARY(name) Array name(const mlx_array a, const mlx_array b);
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

Array astype(const mlx_array a, mlx_dtype dtype);
Array reshape(const mlx_array a, const Shape& shape);
Array transpose(const mlx_array a, const Shape& axes);
Array swapaxes(const mlx_array a, int axis1, int axis2);
Array expand_dims(const mlx_array a, int axis);
Array squeeze(const mlx_array a, int axis);
Array sum(const mlx_array a);
Array sum_axis(const mlx_array a, int axis, bool keepdims = false);
Array mean_axis(const mlx_array a, int axis, bool keepdims = false);
Array max_axis(const mlx_array a, int axis, bool keepdims = false);
Array logsumexp_axis(const mlx_array a, int axis, bool keepdims = false);
Array argmax_axis(const mlx_array a, int axis, bool keepdims = false);
Array softmax_axis(const mlx_array a, int axis);
Array cumsum(const mlx_array a, int axis, bool reverse = false, bool inclusive = true);
Array sort_axis(const mlx_array a, int axis);
Array argsort_axis(const mlx_array a, int axis);
Array take_axis(const mlx_array a, const mlx_array indices, int axis);
Array take_along_axis(const mlx_array a, const mlx_array indices, int axis);
Array put_along_axis(const mlx_array a, const mlx_array indices, const mlx_array values, int axis);
Array where(const mlx_array cond, const mlx_array x, const mlx_array y);
Array concatenate(std::initializer_list<mlx_array> arrays, int axis);
Array slice(const mlx_array a, const Shape& start, const Shape& stop);
Array slice_update(const mlx_array src, const mlx_array update, const Shape& start, const Shape& stop);
Array arange(double start, double stop, mlx_dtype dtype);
Array zeros(const Shape& shape, mlx_dtype dtype);
Array full(const Shape& shape, const mlx_array value, mlx_dtype dtype);
Array broadcast_to(const mlx_array a, const Shape& shape);
Array contiguous(const mlx_array a);
Array concatenate(const std::vector<mlx_array>& arrays, int axis);
/** Views of a cut at `indices` along `axis` (its gradient is one concatenation, unlike slices'). */
std::vector<Array> split_sections(const mlx_array a, const Shape& indices, int axis);
/** beta·c + alpha·(a·b) in one op. */
Array addmm(const mlx_array c, const mlx_array a, const mlx_array b, float alpha, float beta);

Array rms_norm(const mlx_array x, const mlx_array weight, float eps);
Array rope(const mlx_array x, int dims, bool traditional, float base, float scale, int offset, const mlx_array freqs);
Array attention(const mlx_array q, const mlx_array k, const mlx_array v, float scale, const char* mask_mode,
                const mlx_array mask);

Array quantized_matmul(const mlx_array x, const mlx_array w, const mlx_array scales, const mlx_array biases,
                       bool transpose, int group_size, int bits);
Array dequantize(const mlx_array w, const mlx_array scales, const mlx_array biases, int group_size, int bits,
                 mlx_dtype dtype);
/** [wq, scales, biases]. */
std::vector<Array> quantize(const mlx_array w, int group_size, int bits);

Array random_key(uint64_t seed);
/** `num` keys from one, as rows of a [num, 2] array. */
Array random_split_num(const mlx_array key, int num);
/** Two new keys from one. */
std::pair<Array, Array> random_split(const mlx_array key);
Array random_bernoulli(float p, const Shape& shape, const mlx_array key);
Array random_uniform(float low, float high, const Shape& shape, mlx_dtype dtype, const mlx_array key);
Array random_categorical(const mlx_array logits, int axis, const mlx_array key);

void eval(std::initializer_list<mlx_array> arrays);
void eval(const std::vector<mlx_array>& arrays);

/** The arrays of an mlx_vector_array (a closure's inputs or outputs), each owned. */
std::vector<Array> arrays_of(const mlx_vector_array in);

/** `x`, made to be computed only after `dependency` (mlx_depends); `x` itself when it is empty. */
Array after(const mlx_array x, const Array& dependency);
/** The first output of fn(inputs), differentiated by `vjp` instead of through fn (mlx_custom_vjp). */
Array with_vjp(const Closure& fn, const ClosureCustom& vjp, const std::vector<mlx_array>& inputs);

/** Copies an evaluated array out as T (converting dtype first when needed). */
template <typename T>
T item(const mlx_array a);

}  // namespace mlxq::mx
