// q/k/v and gate/up as one matmul each: their base weights are concatenated along the output axis
// once at finalize, and the separate projections become views of the concatenation (decode, export
// and fused_weight keep reading them), so the base is stored once.
#include <stdexcept>

#include "model/block_context.h"
#include "model/llama.h"
#include "model/phase_probe.h"
#include "mx.h"

namespace mlxq::model {
namespace {

bool same_layout(const Linear& a, const Linear& b) {
  auto dt = [](const Array& x) { return x.empty() ? MLX_BOOL : mx::dtype_of(x.get()); };
  return a.in == b.in && a.bits == b.bits && a.group_size == b.group_size && a.bias.empty() == b.bias.empty() &&
         a.scales.empty() == b.scales.empty() && a.biases.empty() == b.biases.empty() && dt(a.w) == dt(b.w) &&
         dt(a.scales) == dt(b.scales) && dt(a.biases) == dt(b.biases) && dt(a.bias) == dt(b.bias);
}

Array concat_rows(const std::vector<const Linear*>& parts, Array Linear::*member) {
  std::vector<mlx_array> views;
  for (const Linear* l : parts) views.push_back((l->*member).get());
  return mx::concatenate(views, 0);
}

/** Rows [start, stop) of a matrix or vector, evaluated: a view sharing the fused buffer. */
Array row_view(const Array& fused, int start, int stop) {
  auto shape = mx::shape_of(fused.get());
  mx::Shape lo(shape.size(), 0), hi = shape;
  lo[0] = start;
  hi[0] = stop;
  return mx::slice(fused.get(), lo, hi);
}

/** Fuses proj[first..first+count) into `fused` when their layouts agree; the parts become views. */
void fuse_group(Layer& layer, Linear& fused, int first, int count) {
  std::vector<const Linear*> parts;
  for (int p = first; p < first + count; ++p) {
    if (!same_layout(layer.proj[first], layer.proj[p])) return;
    parts.push_back(&layer.proj[p]);
  }
  Linear f;
  f.in = layer.proj[first].in;
  f.bits = layer.proj[first].bits;
  f.group_size = layer.proj[first].group_size;
  for (const Linear* l : parts) f.out += l->out;
  std::vector<mlx_array> to_eval;
  for (Array Linear::*m : {&Linear::w, &Linear::scales, &Linear::biases, &Linear::bias}) {
    if ((layer.proj[first].*m).empty()) continue;
    f.*m = concat_rows(parts, m);
    to_eval.push_back((f.*m).get());
  }
  mx::eval(to_eval);
  int start = 0;
  to_eval.clear();
  for (int p = first; p < first + count; ++p) {
    Linear& l = layer.proj[p];
    for (Array Linear::*m : {&Linear::w, &Linear::scales, &Linear::biases, &Linear::bias}) {
      if ((l.*m).empty()) continue;
      l.*m = row_view(f.*m, start, start + l.out);
      to_eval.push_back((l.*m).get());
    }
    start += l.out;
  }
  mx::eval(to_eval);
  fused = std::move(f);
}

}  // namespace

void Model::fuse_projections() {
  if (!build_.fuse_projections) return;
  for (Layer& layer : layers_) {
    fuse_group(layer, layer.qkv, Q, 3);
    fuse_group(layer, layer.gate_up, GATE, 2);
  }
}

std::vector<Array> Model::project_group(const Layer& layer, int first, int count, const mlx_array x,
                                        const BlockContext& ctx, const std::vector<mlx_array>* lora) const {
  const Linear& fused = first == Q ? layer.qkv : layer.gate_up;
  std::vector<Array> out;
  if (!fused.loaded() || (first != Q && first != GATE)) {
    for (int p = first; p < first + count; ++p) out.push_back(project(layer, p, x, ctx, lora));
    return out;
  }
  auto shape = mx::shape_of(x);
  const int n = static_cast<int>(mlx_array_size(x) / static_cast<size_t>(shape.back()));
  Array x2 = mx::reshape(x, {n, shape.back()});
  Array y = linear_base(fused, x2.get(), build_.kernel);
  mx::Shape cuts;
  for (int p = first, at = 0; p < first + count - 1; ++p) cuts.push_back(at += layer.proj[p].out);
  out = mx::split_sections(y.get(), cuts, 1);
  // One mark per projection, as the unfused path charges them; the first one evaluates the matmul.
  for (const Array& part : out) mark_phase(first == Q ? "attention projections (base)" : "MLP projections (base)", {part.get()});

  std::vector<int> adapted;
  if (lora != nullptr) {
    for (int p = first; p < first + count; ++p) {
      if (layer.proj[p].lora_index >= 0) adapted.push_back(p);
    }
  }
  const bool shared_a = ctx.dropout_keys.empty() && !adapted.empty() &&
                        mx::dtype_of((*lora)[layer.proj[adapted[0]].lora_index]) == mx::dtype_of(y.get());
  if (shared_a) {
    // One x·[A_1 … A_k] for the group, then each member's scale·(x·A_i)·B_i added by one addmm.
    std::vector<mlx_array> as;
    for (int p : adapted) as.push_back((*lora)[layer.proj[p].lora_index]);
    Array a_all = as.size() == 1 ? mx::ref(as[0]) : mx::concatenate(as, 1);
    Array xa = mx::matmul(x2.get(), a_all.get());
    mx::Shape rank_cuts;
    for (size_t i = 1, at = 0; i < as.size(); ++i) rank_cuts.push_back(static_cast<int>(at += mx::dim(as[i - 1], 1)));
    std::vector<Array> xas = as.size() == 1 ? std::vector<Array>{} : mx::split_sections(xa.get(), rank_cuts, 1);
    for (size_t i = 0; i < adapted.size(); ++i) {
      const int p = adapted[i];
      mlx_array b = (*lora)[layer.proj[p].lora_index + 1];
      Array& part = out[p - first];
      part = mx::addmm(part.get(), as.size() == 1 ? xa.get() : xas[i].get(), b, lora_.scale, 1.0f);
      mark_phase("LoRA branches", {part.get()});
    }
  }
  for (int p = first; p < first + count; ++p) {
    mx::Shape s = shape;
    s.back() = layer.proj[p].out;
    out[p - first] = mx::reshape(out[p - first].get(), s);
  }
  if (!shared_a) {
    // Dropout draws a mask per projection, so each adapter sees its own input.
    for (int p : adapted) out[p - first] = add_lora(layer, p, x, std::move(out[p - first]), ctx, lora);
  }
  return out;
}

}  // namespace mlxq::model
