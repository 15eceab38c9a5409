// Loading and LoRA set-up of the decoder; the compute lives in forward.cc and grad.cc.
#include "model/llama.h"

#include <cmath>
#include <regex>
#include <stdexcept>
#include <utility>

#include "heap.h"
#include "mx.h"

namespace mlxq::model {
namespace {

constexpr const char* kProjPaths[kNumProj] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                              "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                              "mlp.down_proj"};
constexpr const char* kProjNames[kNumProj] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

std::string shape_string(const std::vector<int>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

void expect_shape(const std::string& name, const mlx_array a, const std::vector<int>& expected) {
  auto got = mx::shape_of(a);
  if (got != expected) {
    throw std::runtime_error("tensor '" + name + "' has shape " + shape_string(got) + ", expected " +
                             shape_string(expected));
  }
}

}  // namespace

const char* proj_path(int p) { return kProjPaths[p]; }
const char* proj_short_name(int p) { return kProjNames[p]; }

Model::Model(ModelConfig config, BuildOptions build, LoraOptions lora)
    : config_(std::move(config)), build_(build), lora_(std::move(lora)), layers_(config_.num_layers) {
  // Weights arrive next, each with transients (decoded floats, repacks, JS buffers) freed later.
  begin_bulk_load();
  const int hd = config_.head_dim;
  const int q_out = config_.num_heads * hd;
  const int kv_out = config_.num_kv_heads * hd;
  for (auto& l : layers_) {
    const std::array<std::pair<int, int>, kNumProj> dims = {
        std::pair{config_.hidden_size, q_out},        {config_.hidden_size, kv_out},
        {config_.hidden_size, kv_out},                {q_out, config_.hidden_size},
        {config_.hidden_size, config_.intermediate_size}, {config_.hidden_size, config_.intermediate_size},
        {config_.intermediate_size, config_.hidden_size}};
    for (int p = 0; p < kNumProj; ++p) {
      l.proj[p].in = dims[p].first;
      l.proj[p].out = dims[p].second;
    }
  }
  lm_head_.in = config_.hidden_size;
  lm_head_.out = config_.vocab_size;
}

Linear* Model::linear_for(const std::string& name, std::string* which) {
  return const_cast<Linear*>(std::as_const(*this).linear_for(name, which));
}

const Linear* Model::linear_for(const std::string& name, std::string* which) const {
  static const std::regex layer_re(R"(^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+_proj)\.(weight|bias)$)");
  std::smatch m;
  if (name == "lm_head.weight") {
    *which = "weight";
    return &lm_head_;
  }
  if (!std::regex_match(name, m, layer_re)) return nullptr;
  int index = std::stoi(m[1]);
  if (index < 0 || index >= config_.num_layers) {
    throw std::runtime_error("tensor '" + name + "' names layer " + std::to_string(index) + " but the model has " +
                             std::to_string(config_.num_layers));
  }
  std::string path = std::string(m[2]) + "." + std::string(m[3]);
  for (int p = 0; p < kNumProj; ++p) {
    if (path == kProjPaths[p]) {
      *which = m[4];
      return &layers_[index].proj[p];
    }
  }
  return nullptr;
}

int Model::quantizable_in_features(const std::string& name) const {
  if (name == "model.embed_tokens.weight") return config_.hidden_size;
  std::string which;
  const Linear* l = linear_for(name, &which);
  return l != nullptr && which == "weight" ? l->in : 0;
}

void Model::set_weight(const std::string& name, Array&& value) {
  if (finalized_) throw std::runtime_error("the model is already finalized; weights are frozen");
  static const std::regex norm_re(R"(^model\.layers\.(\d+)\.(input_layernorm|post_attention_layernorm)\.weight$)");
  const mlx_dtype dt = build_.compute_dtype;
  std::smatch m;
  if (name == "model.embed_tokens.weight") {
    expect_shape(name, value.get(), {config_.vocab_size, config_.hidden_size});
    embed_ = mx::astype(value.get(), dt);
    mx::eval({embed_.get()});
    embed_quantized_ = Linear{};
    return;
  }
  if (name == "model.norm.weight") {
    expect_shape(name, value.get(), {config_.hidden_size});
    final_norm_ = mx::astype(value.get(), dt);
    mx::eval({final_norm_.get()});
    return;
  }
  if (std::regex_match(name, m, norm_re)) {
    int index = std::stoi(m[1]);
    if (index >= config_.num_layers) throw std::runtime_error("tensor '" + name + "' names a layer the model does not have");
    expect_shape(name, value.get(), {config_.hidden_size});
    Array& slot = std::string(m[2]) == "input_layernorm" ? layers_[index].attn_norm : layers_[index].mlp_norm;
    slot = mx::astype(value.get(), dt);
    mx::eval({slot.get()});
    return;
  }
  std::string which;
  Linear* l = linear_for(name, &which);
  if (l == nullptr) {
    if (name.find("rotary_emb.inv_freq") != std::string::npos) return;  // recomputed from the config
    throw std::runtime_error("unexpected tensor '" + name + "' for a Llama-family model");
  }
  if (which == "bias") {
    expect_shape(name, value.get(), {l->out});
    l->bias = mx::astype(value.get(), dt);
    mx::eval({l->bias.get()});
    return;
  }
  expect_shape(name, value.get(), {l->out, l->in});
  const bool quantize = build_.quant_bits != 0 && l->in % build_.quant_group_size == 0;
  if (quantize) {
    // Quantize from float32 so the grid does not depend on the file's dtype rounding.
    Array f = mx::astype(value.get(), MLX_FLOAT32);
    auto parts = mx::quantize(f.get(), build_.quant_group_size, build_.quant_bits);
    l->w = std::move(parts[0]);
    l->scales = mx::astype(parts[1].get(), dt);
    l->biases = mx::astype(parts[2].get(), dt);
    l->bits = build_.quant_bits;
    l->group_size = build_.quant_group_size;
    mx::eval({l->w.get(), l->scales.get(), l->biases.get()});
  } else {
    l->w = mx::astype(value.get(), dt);
    l->scales.reset();
    l->biases.reset();
    l->bits = 0;
    mx::eval({l->w.get()});
  }
}

Array Model::embed_tokens(const mlx_array tokens) const {
  if (embed_quantized_.loaded()) return gather_dequantized_rows(embed_quantized_, tokens, build_.compute_dtype);
  return mx::take_axis(embed_.get(), tokens, 0);
}

void Model::set_quantized_embedding(Array&& wq, Array&& scales, Array&& biases, int bits, int group_size) {
  const std::string name = "model.embed_tokens.weight";
  Linear& e = embed_quantized_;
  e.in = config_.hidden_size;
  e.out = config_.vocab_size;
  if (e.in % group_size != 0) throw std::runtime_error("tensor '" + name + "': group size does not divide its columns");
  expect_shape(name + " (packed)", wq.get(), {e.out, e.in * bits / 32});
  expect_shape(name + " (scales)", scales.get(), {e.out, e.in / group_size});
  expect_shape(name + " (biases)", biases.get(), {e.out, e.in / group_size});
  if (config_.tie_word_embeddings) {
    // The tied head multiplies by the whole matrix: it stays dense.
    Array dense = mx::dequantize(wq.get(), scales.get(), biases.get(), group_size, bits, MLX_FLOAT32);
    set_weight(name, std::move(dense));
    return;
  }
  e.w = std::move(wq);
  e.scales = stored_quant_param(scales.get(), build_.compute_dtype);
  e.biases = stored_quant_param(biases.get(), build_.compute_dtype);
  e.bits = bits;
  e.group_size = group_size;
  mx::eval({e.w.get(), e.scales.get(), e.biases.get()});
  drop_implied_biases(e);
  embed_.reset();
}

void Model::set_quantized(const std::string& name, Array&& wq, Array&& scales, Array&& biases, int bits,
                          int group_size) {
  if (finalized_) throw std::runtime_error("the model is already finalized; weights are frozen");
  if (name == "model.embed_tokens.weight") {
    set_quantized_embedding(std::move(wq), std::move(scales), std::move(biases), bits, group_size);
    return;
  }
  std::string which;
  Linear* l = linear_for(name, &which);
  if (l == nullptr || which != "weight") {
    throw std::runtime_error("tensor '" + name + "' is not a linear weight, so it cannot be stored quantized");
  }
  if (l->in % group_size != 0) throw std::runtime_error("tensor '" + name + "': group size does not divide its inputs");
  expect_shape(name + " (packed)", wq.get(), {l->out, l->in * bits / 32});
  expect_shape(name + " (scales)", scales.get(), {l->out, l->in / group_size});
  expect_shape(name + " (biases)", biases.get(), {l->out, l->in / group_size});
  l->w = std::move(wq);
  // float16 scales of a float32 model stay float16 (half the bytes); they are widened exactly at use.
  l->scales = stored_quant_param(scales.get(), build_.compute_dtype);
  l->biases = stored_quant_param(biases.get(), build_.compute_dtype);
  l->bits = bits;
  l->group_size = group_size;
  mx::eval({l->w.get(), l->scales.get(), l->biases.get()});
  drop_implied_biases(*l);
}

std::vector<std::string> Model::missing_weights() const {
  std::vector<std::string> missing;
  if (embed_.empty() && !embed_quantized_.loaded()) missing.push_back("model.embed_tokens.weight");
  if (final_norm_.empty()) missing.push_back("model.norm.weight");
  if (!config_.tie_word_embeddings && !lm_head_.loaded()) missing.push_back("lm_head.weight");
  for (int i = 0; i < config_.num_layers; ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    if (layers_[i].attn_norm.empty()) missing.push_back(prefix + "input_layernorm.weight");
    if (layers_[i].mlp_norm.empty()) missing.push_back(prefix + "post_attention_layernorm.weight");
    for (int p = 0; p < kNumProj; ++p) {
      if (!layers_[i].proj[p].loaded()) missing.push_back(prefix + kProjPaths[p] + ".weight");
      if (config_.attention_bias && p <= V && layers_[i].proj[p].bias.empty()) {
        missing.push_back(prefix + kProjPaths[p] + ".bias");
      }
    }
  }
  return missing;
}

void Model::finalize() {
  if (finalized_) return;
  auto missing = missing_weights();
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 8; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 8) list += ", … (" + std::to_string(missing.size()) + " in all)";
    throw std::runtime_error("the model is missing tensors: " + list);
  }
  // RoPE periods: the configured ones (llama3 scaling), else base^(2i/d).
  const int half = config_.head_dim / 2;
  std::vector<float> periods = config_.rope_periods;
  if (periods.empty()) {
    periods.resize(half);
    for (int i = 0; i < half; ++i) {
      periods[i] = static_cast<float>(std::pow(static_cast<double>(config_.rope_theta), 2.0 * i / config_.head_dim));
    }
  }
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) inv[i] = 1.0f / periods[i];
  rope_periods_ = mx::from_data(periods.data(), {half}, MLX_FLOAT32);
  rope_inv_freqs_ = mx::from_data(inv.data(), {half}, MLX_FLOAT32);
  fuse_projections();

  // LoRA: A ~ U(±1/√in) (Kaiming-uniform with a = √5, as mlx-lm and PEFT), B = 0.
  if (lora_.rank > 0) {
    for (const auto& t : lora_.targets) {
      bool known = false;
      for (int p = 0; p < kNumProj; ++p) known = known || t == kProjNames[p];
      if (!known) throw std::runtime_error("unknown LoRA target '" + t + "'");
    }
    Array key = mx::random_key(lora_.seed);
    const int first = std::max(0, config_.num_layers - lora_.num_layers);
    for (int i = first; i < config_.num_layers; ++i) {
      for (int p = 0; p < kNumProj; ++p) {
        bool wanted = false;
        for (const auto& t : lora_.targets) wanted = wanted || t == kProjNames[p];
        if (!wanted) continue;
        Linear& l = layers_[i].proj[p];
        auto [next, sub] = mx::random_split(key.get());
        key = std::move(next);
        const float bound = 1.0f / std::sqrt(static_cast<float>(l.in));
        Array a = mx::random_uniform(-bound, bound, {l.in, lora_.rank}, lora_.dtype, sub.get());
        Array b = mx::zeros({lora_.rank, l.out}, lora_.dtype);
        l.lora_index = static_cast<int>(lora_params_.size());
        const std::string prefix = "model.layers." + std::to_string(i) + "." + kProjPaths[p];
        lora_names_.push_back(prefix + ".lora_a");
        lora_names_.push_back(prefix + ".lora_b");
        lora_params_.push_back(std::move(a));
        lora_params_.push_back(std::move(b));
      }
    }
    std::vector<mlx_array> views = lora_views();
    if (!views.empty()) mx::eval(views);
  }
  finalized_ = true;
  end_bulk_load();
}

std::vector<mlx_array> Model::lora_views() const {
  std::vector<mlx_array> out;
  out.reserve(lora_params_.size());
  for (const auto& a : lora_params_) out.push_back(a.get());
  return out;
}

Array Model::fused_weight(int layer, int p, mlx_dtype dtype) const {
  const Linear& l = layers_.at(layer).proj.at(p);
  Array w = dense_weight(l, MLX_FLOAT32);
  if (l.lora_index >= 0 && lora_enabled_) {
    Array ab = mx::matmul(lora_params_[l.lora_index].get(), lora_params_[l.lora_index + 1].get());  // [in, out]
    Array abt = mx::transpose(ab.get(), {1, 0});
    Array scale = mx::scalar(lora_.scale);
    Array delta = mx::multiply(abt.get(), scale.get());
    Array delta32 = mx::astype(delta.get(), MLX_FLOAT32);
    w = mx::add(w.get(), delta32.get());
  }
  return mx::astype(w.get(), dtype);
}

Array Model::dense_named(const std::string& name, mlx_dtype dtype) const {
  static const std::regex layer_re(
      R"(^model\.layers\.(\d+)\.(input_layernorm|post_attention_layernorm|self_attn\.\w+_proj|mlp\.\w+_proj)\.(weight|bias)$)");
  if (name == "model.embed_tokens.weight") {
    return embed_quantized_.loaded() ? dense_weight(embed_quantized_, dtype) : mx::astype(embed_.get(), dtype);
  }
  if (name == "model.norm.weight") return mx::astype(final_norm_.get(), dtype);
  if (name == "lm_head.weight") {
    if (config_.tie_word_embeddings) return mx::astype(embed_.get(), dtype);
    return dense_weight(lm_head_, dtype);
  }
  std::smatch m;
  if (std::regex_match(name, m, layer_re)) {
    int index = std::stoi(m[1]);
    if (index < config_.num_layers) {
      const Layer& layer = layers_[index];
      const std::string part = m[2];
      if (part == "input_layernorm" && m[3] == "weight") return mx::astype(layer.attn_norm.get(), dtype);
      if (part == "post_attention_layernorm" && m[3] == "weight") return mx::astype(layer.mlp_norm.get(), dtype);
      for (int p = 0; p < kNumProj; ++p) {
        if (part != kProjPaths[p]) continue;
        if (m[3] == "weight") return fused_weight(index, p, dtype);
        if (!layer.proj[p].bias.empty()) return mx::astype(layer.proj[p].bias.get(), dtype);
      }
    }
  }
  throw std::runtime_error("the model has no weight named '" + name + "'");
}

std::vector<std::string> Model::weight_names() const {
  std::vector<std::string> names{"model.embed_tokens.weight"};
  for (int i = 0; i < config_.num_layers; ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    names.push_back(prefix + "input_layernorm.weight");
    for (int p = 0; p < kNumProj; ++p) {
      names.push_back(prefix + kProjPaths[p] + ".weight");
      if (!layers_[i].proj[p].bias.empty()) names.push_back(prefix + kProjPaths[p] + ".bias");
    }
    names.push_back(prefix + "post_attention_layernorm.weight");
  }
  names.push_back("model.norm.weight");
  if (!config_.tie_word_embeddings) names.push_back("lm_head.weight");
  return names;
}

size_t Model::base_bytes() const {
  size_t n = 0;
  auto add = [&](const Array& a) {
    if (!a.empty()) n += mlx_array_nbytes(a.get());
  };
  auto add_linear = [&](const Linear& l) {
    add(l.w);
    add(l.scales);
    add(l.biases);
    add(l.bias);
  };
  add(embed_);
  add_linear(embed_quantized_);
  add(final_norm_);
  add_linear(lm_head_);
  for (const auto& layer : layers_) {
    add(layer.attn_norm);
    add(layer.mlp_norm);
    for (const auto& l : layer.proj) add_linear(l);
  }
  return n;
}

size_t Model::lora_bytes() const {
  size_t n = 0;
  for (const auto& a : lora_params_) n += mlx_array_nbytes(a.get());
  return n;
}

size_t Model::lora_parameter_count() const {
  size_t n = 0;
  for (const auto& a : lora_params_) n += mlx_array_size(a.get());
  return n;
}

}  // namespace mlxq::model
