#include "model/compiled_ops.h"

#include <memory>
#include <vector>

#include "errors.h"
#include "mx.h"

namespace mlxq::model {
namespace {

int set_outputs(mlx_vector_array* out, std::initializer_list<mlx_array> arrays) {
  std::vector<mlx_array> v(arrays);
  *out = mlx_vector_array_new_data(v.data(), v.size());
  return 0;
}

/** [g, u] → [silu(g)·u]. */
int swiglu_forward(mlx_vector_array* out, const mlx_vector_array in) {
  try {
    auto p = mx::arrays_of(in);
    Array s = mx::sigmoid(p[0].get());
    Array silu = mx::multiply(p[0].get(), s.get());
    Array act = mx::multiply(silu.get(), p[1].get());
    return set_outputs(out, {act.get()});
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

/** [g, u, d] → [d·u·silu'(g), d·silu(g)], with silu'(g) = s + silu·(1 − s), s = sigmoid(g). */
int swiglu_backward(mlx_vector_array* out, const mlx_vector_array in) {
  try {
    auto p = mx::arrays_of(in);
    const mlx_array g = p[0].get(), u = p[1].get(), d = p[2].get();
    Array s = mx::sigmoid(g);
    Array silu = mx::multiply(g, s.get());
    Array one = mx::astype(mx::scalar(1.0f).get(), mx::dtype_of(s.get()));
    Array one_minus = mx::subtract(one.get(), s.get());
    Array slope = mx::multiply(silu.get(), one_minus.get());
    Array dsilu = mx::add(s.get(), slope.get());
    Array du_g = mx::multiply(d, u);
    Array dg = mx::multiply(du_g.get(), dsilu.get());
    Array du = mx::multiply(d, silu.get());
    return set_outputs(out, {dg.get(), du.get()});
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

int shifted_exp_kernel(mlx_vector_array* out, const mlx_vector_array in) {
  try {
    auto p = mx::arrays_of(in);
    Array shifted = mx::subtract(p[0].get(), p[1].get());
    Array e = mx::exp(shifted.get());
    return set_outputs(out, {e.get()});
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

/** [e, f, w, targets, columns] → [where(columns == targets, e·f − w, e·f)]. */
int logit_grad_kernel(mlx_vector_array* out, const mlx_vector_array in) {
  try {
    auto p = mx::arrays_of(in);
    Array scaled = mx::multiply(p[0].get(), p[1].get());
    Array at_target = mx::subtract(scaled.get(), p[2].get());
    Array hit = mx::equal(p[4].get(), p[3].get());
    Array dz = mx::where(hit.get(), at_target.get(), scaled.get());
    return set_outputs(out, {dz.get()});
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

Array apply_one(const Closure& fn, std::initializer_list<mlx_array> inputs) {
  std::vector<mlx_array> v(inputs);
  VectorArray in(mlx_vector_array_new_data(v.data(), v.size()));
  VectorArray res(mlx_vector_array_new());
  check(mlx_closure_apply(res.out(), fn.get(), in.get()), "mlx_closure_apply");
  Array out;
  check(mlx_vector_array_get(out.out(), res.get(), 0), "mlx_vector_array_get");
  return out;
}

/** The custom VJP: runs the compiled backward (the payload, an owned closure) on primals and cotangent. */
int swiglu_vjp(mlx_vector_array* out, const mlx_vector_array primals, const mlx_vector_array cotangents,
               const mlx_vector_array, void* payload) {
  try {
    auto p = mx::arrays_of(primals);
    auto c = mx::arrays_of(cotangents);
    mlx_array ins[3] = {p[0].get(), p[1].get(), c[0].get()};
    VectorArray in(mlx_vector_array_new_data(ins, 3));
    check(mlx_closure_apply(out, *static_cast<mlx_closure*>(payload), in.get()), "mlx_closure_apply");
    return 0;
  } catch (const std::exception& e) {
    stash_closure_error(e.what());
    return 1;
  }
}

Closure compiled(int (*fn)(mlx_vector_array*, const mlx_vector_array)) {
  Closure plain(mlx_closure_new_func(fn));
  Closure out;
  check(mlx_compile(out.out(), plain.get(), false), "mlx_compile");
  return out;
}

}  // namespace

CompiledOps::CompiledOps() {
  Closure forward = compiled(&swiglu_forward);
  // The VJP closure may outlive this object inside a graph node, so it owns its own reference.
  auto* backward = new mlx_closure(mlx_closure_new());
  Closure compiled_backward = compiled(&swiglu_backward);
  if (mlx_closure_set(backward, compiled_backward.get()) != 0) {
    mlx_closure_free(*backward);
    delete backward;
    check(1, "mlx_closure_set");
  }
  ClosureCustom vjp(mlx_closure_custom_new_func_payload(&swiglu_vjp, backward, [](void* p) {
    auto* c = static_cast<mlx_closure*>(p);
    mlx_closure_free(*c);
    delete c;
  }));
  check(mlx_custom_vjp(swiglu_.out(), forward.get(), vjp.get()), "mlx_custom_vjp");
  shifted_exp_ = compiled(&shifted_exp_kernel);
  logit_grad_ = compiled(&logit_grad_kernel);
}

Array CompiledOps::swiglu(const mlx_array g, const mlx_array u) const { return apply_one(swiglu_, {g, u}); }

Array CompiledOps::shifted_exp(const mlx_array z, const mlx_array m) const { return apply_one(shifted_exp_, {z, m}); }

Array CompiledOps::logit_grad(const mlx_array e, const mlx_array f, const mlx_array w, const mlx_array targets,
                              const mlx_array columns) const {
  return apply_one(logit_grad_, {e, f, w, targets, columns});
}

std::shared_ptr<const CompiledOps> Model::compiled_ops() const {
  if (!build_.compile_elementwise) return nullptr;
  if (!compiled_) compiled_ = std::make_shared<CompiledOps>();
  return compiled_;
}

Array Model::swiglu(const mlx_array g, const mlx_array u) const {
  if (!build_.compile_elementwise) {
    Array sg = mx::sigmoid(g);
    Array silu = mx::multiply(g, sg.get());
    return mx::multiply(silu.get(), u);
  }
  return compiled_ops()->swiglu(g, u);
}

}  // namespace mlxq::model
