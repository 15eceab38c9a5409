// What a Llama-family decoder is made of. Parsed from the JS object that lib/model/config.ts
// builds (from an HF config.json or GGUF metadata) after validating it.
#pragma once

#include <napi.h>

#include <optional>
#include <string>
#include <vector>

#include <mlx/c/array.h>

namespace mlxq::model {

struct ModelConfig {
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  /** Interleaved pairs (GGUF, llama.cpp row order) rather than split halves (HF). */
  bool rope_traditional = false;
  /** Multiplies positions (linear RoPE scaling is 1/factor). */
  float rope_position_scale = 1.0f;
  /** Per-pair RoPE periods (head_dim/2 of them) when a scaling scheme such as llama3 sets them. */
  std::vector<float> rope_periods;
  bool tie_word_embeddings = false;
  /** q/k/v carry biases (Qwen2). */
  bool attention_bias = false;
  std::optional<int> sliding_window;
};

enum class LinearKernel { QuantizedMatmul, DequantizeMatmul };

struct BuildOptions {
  /** Base linear weights quantized to this many bits; 0 keeps them dense. */
  int quant_bits = 4;
  int quant_group_size = 64;
  mlx_dtype compute_dtype = MLX_FLOAT32;
  LinearKernel kernel = LinearKernel::QuantizedMatmul;
  /**
   * q/k/v and gate/up each run as one matmul over weights concatenated at finalize (the separate
   * projections become views of them, so nothing is stored twice); false runs them one by one.
   */
  bool fuse_projections = true;
  /**
   * SwiGLU under a custom VJP (its gradient in 8 ops instead of autodiff's chain) and the chunked
   * loss's softmax gradient from one exp pass, both as mlx_compile'd closures (fused kernels
   * outside value_and_grad; inside it MLX runs them as plain ops); false: the plain autodiff ops.
   */
  bool compile_elementwise = true;
  /**
   * Causal attention in query blocks of this many rows, each against the keys up to its last row,
   * so the masked upper triangle is mostly never computed (it dominates on the CPU backend, which
   * has no fused attention kernel); 0 picks 128 on the CPU and whole attention on a GPU; -1: whole.
   */
  int attention_query_block = 0;
  /**
   * The whole step (forward, value_and_grad, loss) as one mlx_compile'd closure per batch layout,
   * so MLX can fuse elementwise chains of the forward and backward passes (it compiles nothing
   * inside a traced function); retraced for each new batch shape.
   */
  bool compile_step = false;
};

struct LoraOptions {
  int rank = 0;  // 0: no LoRA
  float scale = 1.0f;
  float dropout = 0.0f;
  /** Projections that get adapters: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj. */
  std::vector<std::string> targets;
  /** Adapters on the last N layers; N >= num_layers means all. */
  int num_layers = 0;
  uint64_t seed = 0;
  mlx_dtype dtype = MLX_FLOAT32;
};

ModelConfig parse_model_config(const Napi::Object& obj);
BuildOptions parse_build_options(const Napi::Object& obj);
LoraOptions parse_lora_options(const Napi::Object& obj);

/**
 * Throws std::length_error unless every weight and LoRA matrix of this shape fits in memory and
 * in MLX's int dimensions, and the whole model fits at 2 bits a weight: checked before anything
 * is allocated, since a failed allocation on MLX's CPU backend crashes rather than throws.
 */
void check_model_sizes(const ModelConfig& config, const LoraOptions& lora);

/** The same for one forward pass over a [batch, length] input: its activations and logits. */
void check_batch_sizes(const ModelConfig& config, int batch, int length);

/**
 * MLX thread, on the CPU backend: attention there materializes every [length, length] score
 * matrix of the batch at once (Metal's fused kernel does not, and its allocator throws).
 */
void check_attention_sizes(const ModelConfig& config, int batch, int length);

}  // namespace mlxq::model
