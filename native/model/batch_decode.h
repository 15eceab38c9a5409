// Several prompts generated together: left-padded into one [rows, length] batch that shares one
// stepped KV cache, each row sampling with its own key, finished rows dropped from the batch.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "handles.h"
#include "model/llama.h"
#include "model/sampler.h"

namespace mlxq::model {

class BatchDecoder {
 public:
  /** JS or MLX thread: holds the prompts only (no MLX arrays yet). */
  BatchDecoder(std::shared_ptr<const Model> model, std::vector<std::vector<int32_t>> prompts, SamplerOptions sampler,
               bool use_lora);

  /** MLX thread: every row starts from the key of `seed`, as a prompt generated alone does. */
  void seed(uint64_t seed);
  /**
   * MLX thread: drops the prompts listed in `finished` (indices into the prompts), then decodes one
   * token for every prompt still running: the first call runs the prompts' prefill. Returns one
   * token per prompt, -1 for a prompt that no longer runs.
   */
  std::vector<int32_t> step(const std::vector<int>& finished);

  int prompt_count() const { return static_cast<int>(prompts_.size()); }
  int longest_prompt() const;
  /** MLX thread: the float32 logits the last step sampled from, [running rows, vocab] in prompt order. */
  Array last_logits() const;
  /**
   * Rows whose prefill runs in one pass: their [heads, length, length] attention scores together
   * stay within what one prompt alone needs or 256 MiB, whichever is more.
   */
  int prefill_rows_per_pass() const;
  /** Rows still in the batch (the cache's batch dimension). */
  int running() const { return static_cast<int>(rows_.size()); }

 private:
  struct Row {
    int prompt;
    /** Pad positions in front of this row's prompt in the cache. */
    int pad;
    Array key;
    int32_t last = 0;
  };
  void drop(const std::vector<int>& finished);
  Array prefill_tokens();
  /** Pads the prompts and runs their prefill, in row groups when their attention scores are large. */
  Array prefill(const std::vector<mlx_array>* lora);
  Array sample(const mlx_array logits);

  std::shared_ptr<const Model> model_;
  std::vector<std::vector<int32_t>> prompts_;
  SamplerOptions sampler_;
  bool use_lora_;
  std::vector<Row> rows_;
  SteppedKVCache cache_;
  Array last_logits_;
  bool started_ = false;
};

}  // namespace mlxq::model
