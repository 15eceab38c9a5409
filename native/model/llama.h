// A Llama-family decoder (Llama 2/3, Mistral, Qwen2) with frozen, optionally quantized base
// weights and LoRA adapters whose parameters are passed in explicitly, so that value_and_grad can
// differentiate them and nothing else.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "handles.h"
#include "model/config.h"
#include "model/linear.h"

namespace mlxq::model {

enum Proj { Q = 0, K, V, O, GATE, UP, DOWN, kNumProj };
/** "self_attn.q_proj", "mlp.down_proj", … */
const char* proj_path(int p);
/** "q_proj", "down_proj", … */
const char* proj_short_name(int p);

struct Layer {
  Array attn_norm;
  Array mlp_norm;
  std::array<Linear, kNumProj> proj;
  /**
   * q/k/v and gate/up weights concatenated along the output axis (empty when not fused); proj[Q..V]
   * and proj[GATE], proj[UP] are then views of them, sharing their memory.
   */
  Linear qkv;
  Linear gate_up;
};

/** mlx_compile'd elementwise kernels of a model (compiled_ops.cc). */
class CompiledOps;

/**
 * Generation's KV cache, as mlx-lm's: per layer a [B, kv_heads, capacity, head_dim] buffer grown by
 * `step` positions when full and written in place at the offset, so a decode step copies neither
 * the history nor a growing concatenation of it.
 */
struct SteppedKVCache {
  std::vector<Array> keys;
  std::vector<Array> values;
  /** Positions written so far (the same in every layer once a forward pass has finished). */
  int offset = 0;
  int step = 256;
  /** Positions a layer's buffer holds before it must grow; 0 before the first pass. */
  int capacity() const;
  /** Writes k, v ([B, H, L, D]) at `offset` into a layer's buffers; views of positions [0, offset + L). */
  std::pair<Array, Array> update(int layer, const mlx_array k, const mlx_array v);
};

/** Token data of one batch; arrays owned by the caller. */
struct Batch {
  mlx_array tokens{};     // [B, L] int32
  mlx_array positions{};  // [B, L] int32, or empty: 0..L-1 (after the cache offset)
  mlx_array segments{};   // [B, L] int32, or empty: one document per row
};

struct ForwardOptions {
  /** Trainable parameters (A, B per adapted projection, in lora_names() order); null: base only. */
  const std::vector<mlx_array>* lora = nullptr;
  /** Key for LoRA dropout; empty: no dropout. */
  mlx_array dropout_key{};
  /** Recompute each decoder block in the backward pass instead of keeping its activations. */
  bool checkpoint = false;
  /** loss() will be differentiated: the chunked loss then computes d loss / d h as it goes. */
  bool differentiable = false;
};

class Model {
 public:
  Model(ModelConfig config, BuildOptions build, LoraOptions lora);

  const ModelConfig& config() const { return config_; }
  const BuildOptions& build() const { return build_; }
  const LoraOptions& lora_options() const { return lora_; }

  // Loading (before finalize).
  /** A dense tensor under its HF name; linear weights are quantized per the build options. */
  void set_weight(const std::string& name, Array&& value);
  /** An already-quantized linear weight (MLX affine layout), e.g. repacked from GGUF Q4_0. */
  void set_quantized(const std::string& name, Array&& wq, Array&& scales, Array&& biases, int bits, int group_size);
  std::vector<std::string> missing_weights() const;
  /**
   * Input features of a weight that may arrive MLX-quantized (the embedding and the linears), or 0
   * for any other name. A quantized tensor's packing is only unambiguous given this.
   */
  int quantizable_in_features(const std::string& name) const;
  /** Checks every weight is there and creates the LoRA parameters (A Kaiming-uniform, B zero). */
  void finalize();
  bool finalized() const { return finalized_; }

  // LoRA parameters: names in mlx-lm's layout (model.layers.N.self_attn.q_proj.lora_a / lora_b).
  const std::vector<std::string>& lora_names() const { return lora_names_; }
  std::vector<Array>& lora_params() { return lora_params_; }
  std::vector<mlx_array> lora_views() const;
  bool lora_enabled() const { return lora_enabled_; }
  void set_lora_enabled(bool enabled) { lora_enabled_ = enabled; }

  // Compute.
  Array logits(const Batch& batch, const ForwardOptions& options) const;
  /**
   * One generation step: tokens [B, L] after the cache's positions, appended to the cache; returns
   * float32 logits [B, vocab] of the last position only (the LM head never sees the others).
   */
  Array decode_logits(const mlx_array tokens, SteppedKVCache& cache, const std::vector<mlx_array>* lora) const;
  /**
   * The same for rows left-padded by pads[i] positions (one per row; empty: none): a row's pad
   * keys are hidden from its real tokens and its positions count from its first real token.
   */
  Array decode_logits(const mlx_array tokens, SteppedKVCache& cache, const std::vector<int>& pads,
                      const std::vector<mlx_array>* lora) const;
  /** Summed masked next-token cross-entropy and the number of supervised tokens. */
  std::pair<Array, Array> loss(const Batch& batch, const mlx_array targets, const mlx_array mask,
                               const ForwardOptions& options) const;
  /**
   * Tokens per chunk of the LM head and cross-entropy in loss() (see chunked_loss.h); 0 computes
   * all [tokens, vocab] logits at once; -1 (the default) picks a size from the vocabulary.
   */
  void set_loss_chunk_tokens(int tokens) { loss_chunk_tokens_ = tokens; }
  int resolved_loss_chunk_tokens() const;
  /** Loss and the gradients of every LoRA parameter (in lora_names() order). */
  struct LossAndGrads {
    Array loss;
    Array count;
    std::vector<Array> grads;
  };
  LossAndGrads loss_and_grads(const Batch& batch, const mlx_array targets, const mlx_array mask,
                              const mlx_array dropout_key, bool checkpoint) const;

  /** One decoder block (public for the checkpoint trampoline). */
  struct BlockContext;
  Array block(int index, const mlx_array h, const BlockContext& ctx, const std::vector<mlx_array>* lora) const;

  /** W + scale·(A·B)ᵀ for a projection, dense in `dtype` (the base weight when it has no adapter). */
  Array fused_weight(int layer, int proj, mlx_dtype dtype) const;
  /**
   * Any weight under its HF name as a dense array: dequantized, with the adapter merged into a
   * linear weight when LoRA is enabled. What a fused export writes.
   */
  Array dense_named(const std::string& name, mlx_dtype dtype) const;
  /** HF names of every weight the model holds, in load order. */
  std::vector<std::string> weight_names() const;
  const Layer& layer(int i) const { return layers_.at(i); }
  const Array& final_norm() const { return final_norm_; }
  const Linear& lm_head() const { return lm_head_; }
  /** Bytes held by the frozen base and by the LoRA parameters. */
  size_t base_bytes() const;
  size_t lora_bytes() const;
  size_t lora_parameter_count() const;

 private:
  const Linear* linear_for(const std::string& name, std::string* which) const;
  Linear* linear_for(const std::string& name, std::string* which);
  Array project(const Layer& l, int p, const mlx_array x, const BlockContext& ctx,
                const std::vector<mlx_array>* lora) const;
  Array apply_rope(const mlx_array x, const BlockContext& ctx) const;
  Array hidden(const Batch& batch, const ForwardOptions& options) const;
  /** rope_offsets: [B] int32 RoPE position of each row's first new token, or empty: ctx.offset for every row. */
  Array decode_block(int index, const mlx_array h, const BlockContext& ctx, const mlx_array rope_offsets,
                     SteppedKVCache& cache, const std::vector<mlx_array>* lora) const;
  Array head_logits(const mlx_array h) const;
  /** The MLP of a block over x (its normed input): in intermediate blocks when frozen and large (blocked_mlp.h). */
  Array mlp(const Layer& layer, const mlx_array x, const BlockContext& ctx, const std::vector<mlx_array>* lora) const;
  /** Embedding rows of `tokens` in the compute dtype: [...tokens, hidden]. */
  Array embed_tokens(const mlx_array tokens) const;
  void set_quantized_embedding(Array&& wq, Array&& scales, Array&& biases, int bits, int group_size);
  /** Concatenates q/k/v and gate/up of every layer where their layouts agree (fused_projections.cc). */
  void fuse_projections();
  /**
   * Projections first..first+count-1 of a layer from its fused weight (one matmul; LoRA A's of the
   * group concatenated in the graph), split after the matmul; falls back to project() per member.
   */
  std::vector<Array> project_group(const Layer& l, int first, int count, const mlx_array x, const BlockContext& ctx,
                                   const std::vector<mlx_array>* lora) const;
  /** y + the LoRA branch of projection p over x (with its dropout); y when p has no adapter. */
  Array add_lora(const Layer& l, int p, const mlx_array x, Array y, const BlockContext& ctx,
                 const std::vector<mlx_array>* lora) const;
  /** The model's compiled kernels, made on first use; null when the build options turn compiling off. */
  std::shared_ptr<const CompiledOps> compiled_ops() const;
  /** silu(g)·u, compiled when the build options say so. */
  Array swiglu(const mlx_array g, const mlx_array u) const;

  ModelConfig config_;
  BuildOptions build_;
  LoraOptions lora_;
  Array embed_;
  /** The embedding kept quantized (untied models): rows are gathered, then dequantized. */
  Linear embed_quantized_;
  Array final_norm_;
  Linear lm_head_;
  std::vector<Layer> layers_;
  Array rope_periods_;
  Array rope_inv_freqs_;
  std::vector<std::string> lora_names_;
  std::vector<Array> lora_params_;
  bool lora_enabled_ = true;
  bool finalized_ = false;
  int loss_chunk_tokens_ = -1;
  /** Created on first use on the MLX thread; released with the model. */
  mutable std::shared_ptr<CompiledOps> compiled_;
  /** Compiled training steps by batch layout (grad.cc), made on first use on the MLX thread. */
  mutable std::map<int, Closure> compiled_steps_;
  LossAndGrads compiled_loss_and_grads(const Batch& batch, const mlx_array targets, const mlx_array mask,
                                       const mlx_array dropout_key, bool checkpoint) const;
};

}  // namespace mlxq::model
