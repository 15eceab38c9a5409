#include "model/linear.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "errors.h"
#include "mx.h"

namespace mlxq::model {
namespace {

/**
 * Output elements of one dequantized block of a large quantized weight. MLX's CPU backend
 * dequantizes through a graph of shifts and casts, whose transients are 3 (2-, 4-, 8-bit) to about
 * 18 (3-, 5-, 6-bit) times the float32 output: a 7B FFN matrix dequantized whole is a 235 MB
 * result over ~0.7 GB of transients, and a 6-bit 32000 × 4096 head about 3.5 GB, freed and mapped
 * again on every call. The backward pass of a plain dequantize + matmul also keeps the result alive
 * until the gradient reaches it. MLXQ_DEQUANT_BLOCK_ELEMENTS overrides the size (tests).
 */
constexpr long kDefaultBlockElements = 1L << 21;

}  // namespace

long dequantize_block_elements() {
  // Read on each graph build (cheap next to building one), so a test can compare both paths.
  const char* v = std::getenv("MLXQ_DEQUANT_BLOCK_ELEMENTS");
  const long n = v ? std::atol(v) : 0;
  return n > 0 ? n : kDefaultBlockElements;
}

namespace {

long block_elements(int bits) {
  const long configured = dequantize_block_elements();
  const bool power_of_two = (bits & (bits - 1)) == 0;
  return power_of_two ? configured : std::max(1L, configured / 8);
}

int block_rows(int bits, int in) { return static_cast<int>(std::max(1L, block_elements(bits) / in)); }

/** The frozen weight a blocked linear's closures hold for as long as the graph needs them. */
struct Frozen {
  Array w, scales, biases;
  int in = 0, out = 0, bits = 0, group_size = 0;
  mlx_dtype dtype = MLX_FLOAT32;
};

Array ref_or_empty(const Array& a) { return a.empty() ? Array() : mx::ref(a.get()); }

Frozen frozen_of(const Linear& l, mlx_dtype dtype) {
  return Frozen{mx::ref(l.w.get()), mx::ref(l.scales.get()), ref_or_empty(l.biases), l.in, l.out, l.bits,
                l.group_size, dtype};
}

/** Scales or biases in the dtype of the activations (float16 scales widen to float32 exactly). */
Array param_as(const mlx_array p, mlx_dtype dtype) {
  return mx::dtype_of(p) == dtype ? mx::ref(p) : mx::astype(p, dtype);
}

Array concat_last(const std::vector<Array>& parts) {
  std::vector<mlx_array> views;
  for (const auto& p : parts) views.push_back(p.get());
  VectorArray v(mlx_vector_array_new_data(views.data(), views.size()));
  Array out;
  check(mlx_concatenate_axis(out.out(), v.get(), -1, mx::stream()), "mlx_concatenate_axis");
  return out;
}

/** −2^(bits−1)·scales in the scales' dtype: the biases of a symmetric format (Q4_0, Q8_0). */
Array implied_biases(const mlx_array scales, int bits) {
  Array k = mx::scalar(-static_cast<float>(1 << (bits - 1)));
  Array k_c = mx::astype(k.get(), mx::dtype_of(scales));
  return mx::multiply(scales, k_c.get());
}

/** Scales and biases of groups [start, stop) in `dtype`; biases implied when none are stored. */
QuantParams group_params(const Frozen& f, const mx::Shape& start, const mx::Shape& stop) {
  Array s = mx::slice(f.scales.get(), start, stop);
  Array s_c = param_as(s.get(), f.dtype);
  if (f.biases.empty()) {
    Array b = implied_biases(s_c.get(), f.bits);
    return {std::move(s_c), std::move(b)};
  }
  Array b = mx::slice(f.biases.get(), start, stop);
  return {std::move(s_c), param_as(b.get(), f.dtype)};
}

/** Rows [r0, r1) of the weight, dense [r1 − r0, in]; waits for `dependency`. */
Array dequantize_rows(const Frozen& f, int r0, int r1, const Array& dependency) {
  const int packed = f.in * f.bits / 32, groups = f.in / f.group_size;
  Array w = mx::slice(f.w.get(), {r0, 0}, {r1, packed});
  Array w_after = mx::after(w.get(), dependency);  // one block dequantized after the previous block's product
  QuantParams q = group_params(f, {r0, 0}, {r1, groups});
  return mx::dequantize(w_after.get(), q.scales.get(), q.biases.get(), f.group_size, f.bits, f.dtype);
}

/** Columns [c0, c1) of the weight (group-aligned), dense [out, c1 − c0]; waits for `dependency`. */
Array dequantize_cols(const Frozen& f, int c0, int c1, const Array& dependency) {
  Array w = mx::slice(f.w.get(), {0, c0 * f.bits / 32}, {f.out, c1 * f.bits / 32});
  Array w_after = mx::after(w.get(), dependency);  // one block dequantized after the previous block's product
  QuantParams q = group_params(f, {0, c0 / f.group_size}, {f.out, c1 / f.group_size});
  return mx::dequantize(w_after.get(), q.scales.get(), q.biases.get(), f.group_size, f.bits, f.dtype);
}

/**
 * Rows [r0, r1) dense, written block by block into one buffer when they span more than two blocks:
 * each slice_update takes over its predecessor's buffer, so the result is never held twice (as
 * concatenating the blocks would).
 */
Array dense_rows(const Frozen& f, int r0, int r1, const Array& dependency) {
  if (long(r1 - r0) * long(f.in) <= 2 * block_elements(f.bits)) return dequantize_rows(f, r0, r1, dependency);
  const int rows = block_rows(f.bits, f.in);
  Array zero = mx::scalar(0.0f);
  Array out = mx::full({r1 - r0, f.in}, zero.get(), f.dtype);
  Array previous = dependency.empty() ? Array() : mx::ref(dependency.get());
  for (int a = r0; a < r1; a += rows) {
    const int b = std::min(r1, a + rows);
    Array block = dequantize_rows(f, a, b, previous);
    out = mx::slice_update(out.get(), block.get(), {a - r0, 0}, {b - r0, f.in});
    // Waiting on the block, not on `out`: a second reader of `out` would stop the next update
    // from taking its buffer over.
    previous = std::move(block);
  }
  return out;
}

/** y = x·Wᵀ, one block of output features at a time. */
Array blocked_forward(const Frozen& f, const mlx_array x) {
  const int rows = block_rows(f.bits, f.in);
  std::vector<Array> parts;
  Array previous;
  for (int r0 = 0; r0 < f.out; r0 += rows) {
    Array w = dequantize_rows(f, r0, std::min(f.out, r0 + rows), previous);
    Array wt = mx::transpose(w.get(), {1, 0});
    Array y = mx::matmul(x, wt.get());
    previous = mx::ref(y.get());
    parts.push_back(std::move(y));
  }
  return parts.size() == 1 ? std::move(parts[0]) : concat_last(parts);
}

/** dx = dy·W, one block of input features (whole groups) at a time. */
Array blocked_input_grad(const Frozen& f, const mlx_array dy) {
  const int fit = static_cast<int>(block_elements(f.bits) / f.out);
  const int cols = std::max(f.group_size, fit / f.group_size * f.group_size);
  std::vector<Array> parts;
  Array previous;
  for (int c0 = 0; c0 < f.in; c0 += cols) {
    Array w = dequantize_cols(f, c0, std::min(f.in, c0 + cols), previous);
    Array dx = mx::matmul(dy, w.get());
    previous = mx::ref(dx.get());
    parts.push_back(std::move(dx));
  }
  return parts.size() == 1 ? std::move(parts[0]) : concat_last(parts);
}

Array first_of(const mlx_vector_array v) {
  Array a;
  check(mlx_vector_array_get(a.out(), v, 0), "mlx_vector_array_get");
  return a;
}

int run_blocked(mlx_vector_array* out, const mlx_vector_array in, void* raw) {
  try {
    Array x = first_of(in);
    Array y = blocked_forward(*static_cast<Frozen*>(raw), x.get());
    mlx_array r = y.get();
    *out = mlx_vector_array_new_data(&r, 1);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

int run_blocked_vjp(mlx_vector_array* out, const mlx_vector_array primals, const mlx_vector_array cotangents,
                    const mlx_vector_array, void* raw) {
  try {
    Array x = first_of(primals);
    Array dy = first_of(cotangents);
    Array dy_c = param_as(dy.get(), static_cast<Frozen*>(raw)->dtype);
    Array dx = blocked_input_grad(*static_cast<Frozen*>(raw), dy_c.get());
    Array dx_c = param_as(dx.get(), mx::dtype_of(x.get()));
    mlx_array r = dx_c.get();
    *out = mlx_vector_array_new_data(&r, 1);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

void delete_frozen(void* p) { delete static_cast<Frozen*>(p); }

/**
 * x·Wᵀ for a large quantized W, dequantized block by block in the forward pass and again in the
 * backward pass (a custom VJP), so no dense copy of W is ever whole or kept for the gradient.
 * The blocks are chained: MLX schedules breadth-first and would otherwise dequantize every block
 * before multiplying any.
 */
Array blocked_linear(const Linear& l, const mlx_array x) {
  auto* f = new Frozen(frozen_of(l, mx::dtype_of(x)));
  Closure fn(mlx_closure_new_func_payload(&run_blocked, f, &delete_frozen));
  auto* g = new Frozen(frozen_of(l, mx::dtype_of(x)));
  ClosureCustom vjp(mlx_closure_custom_new_func_payload(&run_blocked_vjp, g, &delete_frozen));
  return mx::with_vjp(fn, vjp, {x});
}

}  // namespace

Array stored_quant_param(const mlx_array given, mlx_dtype compute) {
  const mlx_dtype d = mx::dtype_of(given);
  if (compute == MLX_FLOAT32 && (d == MLX_FLOAT16 || d == MLX_BFLOAT16)) return mx::ref(given);
  return param_as(given, compute);
}

QuantParams quant_params(const Linear& l, mlx_dtype dtype) {
  const Frozen f = frozen_of(l, dtype);
  return group_params(f, {0, 0}, {l.out, l.in / l.group_size});
}

void drop_implied_biases(Linear& l) {
  if (!l.quantized() || l.biases.empty()) return;
  Array s32 = mx::astype(l.scales.get(), MLX_FLOAT32);
  Array implied = implied_biases(s32.get(), l.bits);
  Array b32 = mx::astype(l.biases.get(), MLX_FLOAT32);
  Array same;
  check(mlx_array_equal(same.out(), implied.get(), b32.get(), false, mx::stream()), "mlx_array_equal");
  mx::eval({same.get()});
  if (mx::item<int>(same.get()) != 0) l.biases.reset();
}

Array gather_dequantized_rows(const Linear& l, const mlx_array rows, mlx_dtype dtype) {
  Array flat = mx::reshape(rows, {-1});
  Array w = mx::take_axis(l.w.get(), flat.get(), 0);
  Array s = mx::take_axis(l.scales.get(), flat.get(), 0);
  Array s_c = param_as(s.get(), dtype);
  Array b_c;
  if (l.biases.empty()) {
    b_c = implied_biases(s_c.get(), l.bits);
  } else {
    Array b = mx::take_axis(l.biases.get(), flat.get(), 0);
    b_c = param_as(b.get(), dtype);
  }
  Array dense = mx::dequantize(w.get(), s_c.get(), b_c.get(), l.group_size, l.bits, dtype);
  mx::Shape shape = mx::shape_of(rows);
  shape.push_back(l.in);
  return mx::reshape(dense.get(), shape);
}

Array dequantized_rows(const Linear& l, int r0, int r1, mlx_dtype dtype, const Array& dependency) {
  return dense_rows(frozen_of(l, dtype), r0, r1, dependency);
}

Array dequantized_cols(const Linear& l, int c0, int c1, mlx_dtype dtype, const Array& dependency) {
  return dequantize_cols(frozen_of(l, dtype), c0, c1, dependency);
}

Linear linear_ref(const Linear& l) {
  Linear f;
  f.in = l.in;
  f.out = l.out;
  f.w = ref_or_empty(l.w);
  f.scales = ref_or_empty(l.scales);
  f.biases = ref_or_empty(l.biases);
  f.bias = ref_or_empty(l.bias);
  f.bits = l.bits;
  f.group_size = l.group_size;
  f.lora_index = l.lora_index;
  return f;
}

bool dequantizes_in_blocks(const Linear& l) {
  return l.quantized() && long(l.out) * long(l.in) > 2 * block_elements(l.bits);
}

Array linear_base(const Linear& l, const mlx_array x, LinearKernel kernel) {
  Array y;
  const mlx_dtype dt = mx::dtype_of(x);
  if (!l.quantized()) {
    Array wt = mx::transpose(l.w.get(), {1, 0});
    y = mx::matmul(x, wt.get());
  } else if (kernel == LinearKernel::QuantizedMatmul) {
    QuantParams q = quant_params(l, dt);
    y = mx::quantized_matmul(x, l.w.get(), q.scales.get(), q.biases.get(), true, l.group_size, l.bits);
  } else if (dequantizes_in_blocks(l)) {
    y = blocked_linear(l, x);
  } else {
    // MLX's CPU quantized_matmul is ~40x slower than dequantizing and calling BLAS.
    Array w = dense_weight(l, dt);
    Array wt = mx::transpose(w.get(), {1, 0});
    y = mx::matmul(x, wt.get());
  }
  if (!l.bias.empty()) y = mx::add(y.get(), l.bias.get());
  return y;
}

Array dense_weight(const Linear& l, mlx_dtype dtype) {
  if (!l.quantized()) return mx::astype(l.w.get(), dtype);
  return dense_rows(frozen_of(l, dtype), 0, l.out, Array());
}

}  // namespace mlxq::model
