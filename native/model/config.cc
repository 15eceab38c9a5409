#include "model/config.h"

#include <algorithm>
#include <stdexcept>

#include "allocation_limit.h"
#include "dtype.h"

namespace mlxq::model {
namespace {

[[noreturn]] void fail(const Napi::Object& obj, const std::string& key, const std::string& expected) {
  throw Napi::TypeError::New(obj.Env(), "model config: '" + key + "' must be " + expected);
}

int get_int(const Napi::Object& obj, const char* key, std::optional<int> fallback = std::nullopt) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (fallback) return *fallback;
    fail(obj, key, "an integer");
  }
  if (!v.IsNumber()) fail(obj, key, "an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<int>(d)) fail(obj, key, "an integer");
  return static_cast<int>(d);
}

float get_float(const Napi::Object& obj, const char* key, std::optional<float> fallback = std::nullopt) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (fallback) return *fallback;
    fail(obj, key, "a number");
  }
  if (!v.IsNumber()) fail(obj, key, "a number");
  return v.As<Napi::Number>().FloatValue();
}

bool get_bool(const Napi::Object& obj, const char* key, bool fallback) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) fail(obj, key, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

mlx_dtype get_dtype(const Napi::Object& obj, const char* key, mlx_dtype fallback) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) fail(obj, key, "a dtype name");
  try {
    return dtype_from_name(v.As<Napi::String>().Utf8Value());
  } catch (const std::invalid_argument& e) {
    fail(obj, key, "float32, float16 or bfloat16");
  }
}

void require_positive(const Napi::Object& obj, const char* key, int v) {
  if (v <= 0) fail(obj, key, "a positive integer");
}

}  // namespace

ModelConfig parse_model_config(const Napi::Object& obj) {
  ModelConfig c;
  c.vocab_size = get_int(obj, "vocabSize");
  c.hidden_size = get_int(obj, "hiddenSize");
  c.intermediate_size = get_int(obj, "intermediateSize");
  c.num_layers = get_int(obj, "numLayers");
  c.num_heads = get_int(obj, "numHeads");
  c.num_kv_heads = get_int(obj, "numKvHeads", c.num_heads);
  c.head_dim = get_int(obj, "headDim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  for (auto [key, v] : {std::pair{"vocabSize", c.vocab_size}, {"hiddenSize", c.hidden_size},
                        {"intermediateSize", c.intermediate_size}, {"numLayers", c.num_layers},
                        {"numHeads", c.num_heads}, {"numKvHeads", c.num_kv_heads}, {"headDim", c.head_dim}}) {
    require_positive(obj, key, v);
  }
  if (c.num_heads % c.num_kv_heads != 0) fail(obj, "numKvHeads", "a divisor of numHeads");
  if (c.head_dim % 2 != 0) fail(obj, "headDim", "even");
  c.rms_norm_eps = get_float(obj, "rmsNormEps", 1e-5f);
  c.rope_theta = get_float(obj, "ropeTheta", 10000.0f);
  c.rope_traditional = get_bool(obj, "ropeTraditional", false);
  c.rope_position_scale = get_float(obj, "ropePositionScale", 1.0f);
  Napi::Value periods = obj.Get("ropePeriods");
  if (!periods.IsUndefined() && !periods.IsNull()) {
    if (!periods.IsTypedArray() || periods.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      fail(obj, "ropePeriods", "a Float32Array");
    }
    auto arr = periods.As<Napi::Float32Array>();
    if (static_cast<int>(arr.ElementLength()) != c.head_dim / 2) fail(obj, "ropePeriods", "headDim/2 values long");
    c.rope_periods.assign(arr.Data(), arr.Data() + arr.ElementLength());
  }
  c.tie_word_embeddings = get_bool(obj, "tieWordEmbeddings", false);
  c.attention_bias = get_bool(obj, "attentionBias", false);
  Napi::Value window = obj.Get("slidingWindow");
  if (!window.IsUndefined() && !window.IsNull()) c.sliding_window = get_int(obj, "slidingWindow");
  return c;
}

BuildOptions parse_build_options(const Napi::Object& obj) {
  BuildOptions o;
  o.quant_bits = get_int(obj, "quantBits", 4);
  o.quant_group_size = get_int(obj, "quantGroupSize", 64);
  if (o.quant_bits != 0 && (o.quant_bits < 2 || o.quant_bits > 8 || o.quant_bits == 7)) {
    fail(obj, "quantBits", "0 (dense) or one of 2, 3, 4, 5, 6, 8");
  }
  if (o.quant_group_size != 32 && o.quant_group_size != 64 && o.quant_group_size != 128) {
    fail(obj, "quantGroupSize", "32, 64 or 128");
  }
  o.compute_dtype = get_dtype(obj, "computeDtype", MLX_FLOAT32);
  Napi::Value kernel = obj.Get("kernel");
  if (kernel.IsString()) {
    std::string k = kernel.As<Napi::String>().Utf8Value();
    if (k == "quantized-matmul") o.kernel = LinearKernel::QuantizedMatmul;
    else if (k == "dequantize-matmul") o.kernel = LinearKernel::DequantizeMatmul;
    else fail(obj, "kernel", "'quantized-matmul' or 'dequantize-matmul'");
  } else if (!kernel.IsUndefined()) {
    fail(obj, "kernel", "'quantized-matmul' or 'dequantize-matmul'");
  }
  o.fuse_projections = get_bool(obj, "fuseProjections", true);
  o.compile_elementwise = get_bool(obj, "compileElementwise", true);
  o.attention_query_block = get_int(obj, "attentionQueryBlock", 0);
  o.compile_step = get_bool(obj, "compileStep", false);
  if (o.attention_query_block < -1) fail(obj, "attentionQueryBlock", "-1 (whole), 0 (automatic) or a row count");
  return o;
}

LoraOptions parse_lora_options(const Napi::Object& obj) {
  LoraOptions o;
  o.rank = get_int(obj, "rank", 0);
  if (o.rank < 0) fail(obj, "rank", ">= 0");
  o.scale = get_float(obj, "scale", 1.0f);
  o.dropout = get_float(obj, "dropout", 0.0f);
  if (o.dropout < 0 || o.dropout >= 1) fail(obj, "dropout", "in [0, 1)");
  o.num_layers = get_int(obj, "numLayers", 1 << 30);
  o.seed = static_cast<uint64_t>(get_int(obj, "seed", 0));
  o.dtype = get_dtype(obj, "dtype", MLX_FLOAT32);
  Napi::Value targets = obj.Get("targets");
  if (!targets.IsUndefined()) {
    if (!targets.IsArray()) fail(obj, "targets", "an array of projection names");
    auto arr = targets.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value t = arr.Get(i);
      if (!t.IsString()) fail(obj, "targets", "an array of projection names");
      o.targets.push_back(t.As<Napi::String>().Utf8Value());
    }
  }
  return o;
}

void check_model_sizes(const ModelConfig& c, const LoraOptions& lora) {
  const double hidden = c.hidden_size, q_out = double(c.num_heads) * c.head_dim, kv_out = double(c.num_kv_heads) * c.head_dim;
  if (q_out > 2147483647.0 || kv_out > 2147483647.0) throw std::length_error("model config: numHeads × headDim must be below 2^31");
  const double per_layer = hidden * (q_out + 2 * kv_out) + q_out * hidden + 3 * hidden * c.intermediate_size;
  const double weights = c.num_layers * per_layer + 2.0 * c.vocab_size * hidden;
  check_allocatable(4 * hidden * std::max({q_out, kv_out, double(c.intermediate_size), double(c.vocab_size)}),
                    "a weight matrix of this model config");
  check_allocatable(weights * 2 / 8, "this model config (at 2 bits a weight)");
  if (lora.rank > 0) {
    const double widest = std::max({hidden, q_out, double(c.intermediate_size)});
    check_allocatable(4 * widest * lora.rank, "a LoRA matrix of rank " + std::to_string(lora.rank));
  }
}

void check_batch_sizes(const ModelConfig& c, int batch, int length) {
  const double rows = double(batch) * length;
  const double widest = std::max({double(c.vocab_size), double(c.intermediate_size), double(c.hidden_size)});
  check_allocatable(4 * rows * widest, "a batch of " + std::to_string(batch) + " × " + std::to_string(length) + " tokens");
}

void check_attention_sizes(const ModelConfig& c, int batch, int length) {
  check_allocatable(4.0 * batch * length * double(length) * c.num_heads,
                    "the attention scores of a batch of " + std::to_string(batch) + " × " + std::to_string(length) + " tokens");
}

}  // namespace mlxq::model
