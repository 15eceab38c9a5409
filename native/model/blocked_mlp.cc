#include "model/blocked_mlp.h"

#include <algorithm>

#include "errors.h"
#include "mx.h"

namespace mlxq::model {
namespace {

/** The frozen projections the closures hold for as long as the graph needs them. */
struct FrozenMlp {
  Linear gate, up, down;
};

/**
 * Intermediate features a block: [N, width] activations near one dequantization block, and dense
 * weight blocks [width, D] at most two; whole groups of down's columns.
 */
int block_width(const FrozenMlp& m, int tokens) {
  const long unit = dequantize_block_elements();
  const long by_tokens = unit / std::max(1, tokens);
  const long by_weight = 2 * unit / std::max(1, m.gate.in);
  const int group = m.down.group_size;
  const long width = std::max<long>(group, std::min(by_tokens, by_weight) / group * group);
  return static_cast<int>(std::min<long>(width, m.gate.out));
}

Array times_transposed(const mlx_array x, const Array& w) {
  Array wt = mx::transpose(w.get(), {1, 0});
  return mx::matmul(x, wt.get());
}

Array accumulate(Array total, Array part) {
  return total.empty() ? std::move(part) : mx::add(total.get(), part.get());
}

/**
 * One block's gate and up projections of x, [N, width] each. Each weight is dequantized after the
 * previous product: MLX would otherwise dequantize a block's three weights at once, each with
 * three times its size in scratch (0.2 GB at 7B).
 */
struct GateUp {
  Array g, u;
  Array wg, wu;  // the dense weight rows, [width, D] each
};

GateUp gate_up(const FrozenMlp& m, const mlx_array x, int j0, int j1, const Array& dependency) {
  Array wg = dequantized_rows(m.gate, j0, j1, mx::dtype_of(x), dependency);
  Array g = times_transposed(x, wg);
  Array wu = dequantized_rows(m.up, j0, j1, mx::dtype_of(x), g);
  Array u = times_transposed(x, wu);
  return {std::move(g), std::move(u), std::move(wg), std::move(wu)};
}

/** Σ over blocks of (silu(x·G_jᵀ)·(x·U_jᵀ))·D_jᵀ. Each block waits for the previous one's sum. */
Array forward_blocks(const FrozenMlp& m, const mlx_array x) {
  const int width = block_width(m, mx::dim(x, 0));
  Array y;
  for (int j0 = 0; j0 < m.gate.out; j0 += width) {
    const int j1 = std::min(m.gate.out, j0 + width);
    GateUp gu = gate_up(m, x, j0, j1, y);
    Array s = mx::sigmoid(gu.g.get());
    Array silu = mx::multiply(gu.g.get(), s.get());
    Array h = mx::multiply(silu.get(), gu.u.get());
    Array wd = dequantized_cols(m.down, j0, j1, mx::dtype_of(x), h);
    y = accumulate(std::move(y), times_transposed(h.get(), wd));
  }
  return y;
}

/** dx for cotangent dy: per block, dh = dy·D_j, then silu's and the product's rules, then ·G_j and ·U_j. */
Array backward_blocks(const FrozenMlp& m, const mlx_array x, const mlx_array dy) {
  const int width = block_width(m, mx::dim(x, 0));
  const mlx_dtype dtype = mx::dtype_of(x);
  Array dx;
  for (int j0 = 0; j0 < m.gate.out; j0 += width) {
    const int j1 = std::min(m.gate.out, j0 + width);
    Array wd = dequantized_cols(m.down, j0, j1, dtype, dx);
    Array dh = mx::matmul(dy, wd.get());
    GateUp gu = gate_up(m, x, j0, j1, dh);
    // silu'(g) = s + silu·(1 − s), s = sigmoid(g), as the compiled SwiGLU's gradient.
    Array s = mx::sigmoid(gu.g.get());
    Array silu = mx::multiply(gu.g.get(), s.get());
    Array one = mx::astype(mx::scalar(1.0f).get(), mx::dtype_of(s.get()));
    Array one_minus = mx::subtract(one.get(), s.get());
    Array slope = mx::multiply(silu.get(), one_minus.get());
    Array dsilu = mx::add(s.get(), slope.get());
    Array dh_u = mx::multiply(dh.get(), gu.u.get());
    Array dg = mx::multiply(dh_u.get(), dsilu.get());
    Array du = mx::multiply(dh.get(), silu.get());
    Array from_gate = mx::matmul(dg.get(), gu.wg.get());
    Array from_up = mx::matmul(du.get(), gu.wu.get());
    dx = accumulate(std::move(dx), mx::add(from_gate.get(), from_up.get()));
  }
  return dx;
}

int run_forward(mlx_vector_array* out, const mlx_vector_array in, void* raw) {
  try {
    auto p = mx::arrays_of(in);
    Array y = forward_blocks(*static_cast<FrozenMlp*>(raw), p[0].get());
    mlx_array r = y.get();
    *out = mlx_vector_array_new_data(&r, 1);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

int run_vjp(mlx_vector_array* out, const mlx_vector_array primals, const mlx_vector_array cotangents,
            const mlx_vector_array, void* raw) {
  try {
    auto p = mx::arrays_of(primals);
    auto c = mx::arrays_of(cotangents);
    Array dy = mx::astype(c[0].get(), mx::dtype_of(p[0].get()));
    Array dx = backward_blocks(*static_cast<FrozenMlp*>(raw), p[0].get(), dy.get());
    mlx_array r = dx.get();
    *out = mlx_vector_array_new_data(&r, 1);
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

void delete_mlp(void* p) { delete static_cast<FrozenMlp*>(p); }

FrozenMlp* frozen(const Linear& gate, const Linear& up, const Linear& down) {
  return new FrozenMlp{linear_ref(gate), linear_ref(up), linear_ref(down)};
}

}  // namespace

bool mlp_in_blocks(const Linear& gate, const Linear& up, const Linear& down, LinearKernel kernel, bool adapted) {
  const bool plain = gate.bias.empty() && up.bias.empty() && down.bias.empty();
  const bool quantized = gate.quantized() && up.quantized() && down.quantized();
  const bool shapes = gate.out == up.out && gate.in == up.in && down.in == gate.out && down.out == gate.in;
  return !adapted && shapes && plain && quantized && kernel == LinearKernel::DequantizeMatmul && dequantizes_in_blocks(down) &&
         down.in % down.group_size == 0;
}

Array blocked_mlp(const Linear& gate, const Linear& up, const Linear& down, const mlx_array x) {
  Closure fn(mlx_closure_new_func_payload(&run_forward, frozen(gate, up, down), &delete_mlp));
  ClosureCustom vjp(mlx_closure_custom_new_func_payload(&run_vjp, frozen(gate, up, down), &delete_mlp));
  return mx::with_vjp(fn, vjp, {x});
}

}  // namespace mlxq::model
