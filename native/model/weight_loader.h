// Streams checkpoint files into a Model: dense tensors straight away, MLX-quantized weight/scales/
// biases triples once all three parts have arrived. mlx-lm's sharded exports can put the parts of
// one triple in different files, so unmatched parts wait here for later files.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "handles.h"
#include "model/llama.h"

namespace mlxq::model {

struct QuantizedLayout {
  int bits = 0;
  int group_size = 0;
};

/**
 * The bits and group size of an MLX affine-quantized [out, in] weight, exactly: packed = in·bits/32
 * and groups = in/group. Guessing without `in` is ambiguous (8-bit g64 packs like 4-bit g128), so
 * the caller supplies it. Throws, naming the tensor and its shapes, when no valid layout fits.
 */
QuantizedLayout infer_quantized_layout(const std::string& name, int in, const std::vector<int>& weight,
                                       const std::vector<int>& scales, const std::vector<int>& biases);

class WeightLoader {
 public:
  /** MLX thread: every tensor of one safetensors file; returns the names taken into the model. */
  std::vector<std::string> load_file(Model& model, const std::string& path, mlx_stream cpu_stream);
  /** Throws naming every quantized weight whose triple never completed. */
  void check_complete() const;

 private:
  struct Parts {
    Array weight;
    Array scales;
    Array biases;
  };
  /** Returns the name taken (a triple is taken as its .weight), or "" while a triple is incomplete. */
  std::string take(Model& model, const std::string& name, Array&& value);
  void set_triple(Model& model, const std::string& prefix, Parts& parts);

  std::map<std::string, Parts> pending_;  // by prefix: "model.layers.0.self_attn.q_proj"
};

}  // namespace mlxq::model
