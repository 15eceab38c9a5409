#include "model/weight_loader.h"

#include <stdexcept>

#include "mx.h"
#include "safetensors_entries.h"

namespace mlxq::model {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_string(const std::vector<int>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

bool valid_bits(int b) { return b == 2 || b == 3 || b == 4 || b == 5 || b == 6 || b == 8; }
bool valid_group(int g) { return g == 32 || g == 64 || g == 128; }

}  // namespace

QuantizedLayout infer_quantized_layout(const std::string& name, int in, const std::vector<int>& weight,
                                       const std::vector<int>& scales, const std::vector<int>& biases) {
  auto fail = [&](const std::string& why) {
    return std::runtime_error("quantized tensor '" + name + "' (" + std::to_string(in) + " input features; packed " +
                              shape_string(weight) + ", scales " + shape_string(scales) + ", biases " +
                              shape_string(biases) + "): " + why);
  };
  if (weight.size() != 2 || scales.size() != 2 || scales != biases || scales[0] != weight[0]) {
    throw fail("expected packed [out, in·bits/32] with scales and biases both [out, in/group_size]");
  }
  const int packed = weight[1], groups = scales[1];
  if (in <= 0 || packed <= 0 || groups <= 0 || (packed * 32) % in != 0 || in % groups != 0) {
    throw fail("the shapes do not divide the input features");
  }
  QuantizedLayout q{packed * 32 / in, in / groups};
  if (!valid_bits(q.bits) || !valid_group(q.group_size)) {
    throw fail(std::to_string(q.bits) + " bits with group size " + std::to_string(q.group_size) +
               " is not an MLX layout (bits 2, 3, 4, 5, 6 or 8; group size 32, 64 or 128)");
  }
  return q;
}

std::vector<std::string> WeightLoader::load_file(Model& model, const std::string& path, mlx_stream cpu_stream) {
  std::vector<std::string> taken;
  try {
    // Arrays are lazy: each is read when the model evaluates it, one tensor at a time, so a 7B
    // shard never sits in memory whole.
    for (auto& [name, value] : read_safetensors(path, cpu_stream).tensors) {
      std::string t = take(model, name, std::move(value));
      if (!t.empty()) taken.push_back(std::move(t));
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  return taken;
}

std::string WeightLoader::take(Model& model, const std::string& name, Array&& value) {
  Array* slot = nullptr;
  std::string prefix;
  if (ends_with(name, ".scales") || ends_with(name, ".biases")) {
    prefix = name.substr(0, name.size() - 7);
    slot = ends_with(name, ".scales") ? &pending_[prefix].scales : &pending_[prefix].biases;
  } else if (ends_with(name, ".weight") && mx::dtype_of(value.get()) == MLX_UINT32) {
    prefix = name.substr(0, name.size() - 7);
    slot = &pending_[prefix].weight;
  } else {
    model.set_weight(name, std::move(value));
    return name;
  }
  if (!slot->empty()) throw std::runtime_error("tensor '" + name + "' appears twice");
  *slot = std::move(value);
  Parts& parts = pending_[prefix];
  if (parts.weight.empty() || parts.scales.empty() || parts.biases.empty()) return "";
  set_triple(model, prefix, parts);
  pending_.erase(prefix);
  return prefix + ".weight";
}

void WeightLoader::set_triple(Model& model, const std::string& prefix, Parts& parts) {
  const std::string name = prefix + ".weight";
  const int in = model.quantizable_in_features(name);
  if (in == 0) throw std::runtime_error("tensor '" + name + "' is quantized, but the model has no quantized weight by that name");
  auto q = infer_quantized_layout(name, in, mx::shape_of(parts.weight.get()), mx::shape_of(parts.scales.get()),
                                  mx::shape_of(parts.biases.get()));
  model.set_quantized(name, std::move(parts.weight), std::move(parts.scales), std::move(parts.biases), q.bits,
                      q.group_size);
}

void WeightLoader::check_complete() const {
  if (pending_.empty()) return;
  std::string list;
  for (const auto& [prefix, parts] : pending_) {
    std::string missing;
    if (parts.weight.empty()) missing += " .weight";
    if (parts.scales.empty()) missing += " .scales";
    if (parts.biases.empty()) missing += " .biases";
    list += (list.empty() ? "" : ", ") + prefix + ".weight (missing" + missing + ")";
  }
  throw std::runtime_error("quantized tensors whose weight/scales/biases never all arrived: " + list);
}

}  // namespace mlxq::model
