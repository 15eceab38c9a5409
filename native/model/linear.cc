#include "model/linear.h"

#include "mx.h"

namespace mlxq::model {

Array linear_base(const Linear& l, const mlx_array x, LinearKernel kernel) {
  Array y;
  if (!l.quantized()) {
    Array wt = mx::transpose(l.w.get(), {1, 0});
    y = mx::matmul(x, wt.get());
  } else if (kernel == LinearKernel::QuantizedMatmul) {
    y = mx::quantized_matmul(x, l.w.get(), l.scales.get(), l.biases.get(), true, l.group_size, l.bits);
  } else {
    // MLX's CPU quantized_matmul is ~40x slower than dequantizing and calling BLAS.
    Array w = mx::dequantize(l.w.get(), l.scales.get(), l.biases.get(), l.group_size, l.bits, mx::dtype_of(x));
    Array wt = mx::transpose(w.get(), {1, 0});
    y = mx::matmul(x, wt.get());
  }
  if (!l.bias.empty()) y = mx::add(y.get(), l.bias.get());
  return y;
}

Array dense_weight(const Linear& l, mlx_dtype dtype) {
  if (!l.quantized()) return mx::astype(l.w.get(), dtype);
  return mx::dequantize(l.w.get(), l.scales.get(), l.biases.get(), l.group_size, l.bits, dtype);
}

}  // namespace mlxq::model
