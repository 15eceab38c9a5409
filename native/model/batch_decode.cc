#include "model/batch_decode.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "mx.h"

namespace mlxq::model {

BatchDecoder::BatchDecoder(std::shared_ptr<const Model> model, std::vector<std::vector<int32_t>> prompts,
                           SamplerOptions sampler, bool use_lora)
    : model_(std::move(model)), prompts_(std::move(prompts)), sampler_(sampler), use_lora_(use_lora) {
  for (int i = 0; i < static_cast<int>(prompts_.size()); ++i) {
    if (prompts_[i].empty()) throw std::invalid_argument("prompt " + std::to_string(i) + " holds no token");
    rows_.push_back(Row{i, 0, Array(), 0});
  }
}

int BatchDecoder::longest_prompt() const {
  size_t longest = 0;
  for (const auto& p : prompts_) longest = std::max(longest, p.size());
  return static_cast<int>(longest);
}

void BatchDecoder::seed(uint64_t seed) {
  for (Row& r : rows_) r.key = mx::random_key(seed);
}

Array BatchDecoder::prefill_tokens() {
  size_t length = 0;
  for (const Row& r : rows_) length = std::max(length, prompts_[r.prompt].size());
  // Pads go in front, so every row's last prompt token sits in the batch's last column and its
  // generated tokens are written to the same cache column as every other row's.
  std::vector<int32_t> flat(rows_.size() * length, 0);
  for (size_t i = 0; i < rows_.size(); ++i) {
    const auto& p = prompts_[rows_[i].prompt];
    rows_[i].pad = static_cast<int>(length - p.size());
    std::copy(p.begin(), p.end(), flat.begin() + static_cast<std::ptrdiff_t>(i * length + rows_[i].pad));
  }
  return mx::from_data(flat.data(), {static_cast<int>(rows_.size()), static_cast<int>(length)}, MLX_INT32);
}

namespace {

/** One concatenation of many arrays (pairwise concatenation would copy the first ones again and again). */
Array concatenate_all(const std::vector<Array>& parts, int axis) {
  std::vector<mlx_array> raw;
  for (const Array& a : parts) raw.push_back(a.get());
  VectorArray vec(mlx_vector_array_new_data(raw.data(), raw.size()));
  Array out;
  check(mlx_concatenate_axis(out.out(), vec.get(), axis, mx::stream()), "mlx_concatenate_axis");
  return out;
}

constexpr double kPrefillScoreBytes = 256.0 * 1024 * 1024;

}  // namespace

int BatchDecoder::prefill_rows_per_pass() const {
  size_t length = 0;
  for (const Row& r : rows_) length = std::max(length, prompts_[r.prompt].size());
  const double per_row = 4.0 * static_cast<double>(length) * static_cast<double>(length) * model_->config().num_heads;
  const double rows = std::floor(kPrefillScoreBytes / std::max(per_row, 1.0));
  return static_cast<int>(std::clamp(rows, 1.0, static_cast<double>(std::max<size_t>(rows_.size(), 1))));
}

Array BatchDecoder::prefill(const std::vector<mlx_array>* lora) {
  Array tokens = prefill_tokens();
  std::vector<int> pads;
  for (const Row& r : rows_) pads.push_back(r.pad);
  const int batch = static_cast<int>(rows_.size()), length = mx::dim(tokens.get(), 1);
  const int per_pass = prefill_rows_per_pass();
  if (per_pass >= batch) return model_->decode_logits(tokens.get(), cache_, pads, lora);
  // Row groups one after another, each written into the batch's cache buffers, so the peak holds
  // one group's attention scores and the cache once.
  std::vector<Array> logits;
  for (int r0 = 0; r0 < batch; r0 += per_pass) {
    const int r1 = std::min(batch, r0 + per_pass);
    Array part = mx::slice(tokens.get(), {r0, 0}, {r1, length});
    SteppedKVCache group;
    group.step = cache_.step;
    logits.push_back(model_->decode_logits(part.get(), group, std::vector<int>(pads.begin() + r0, pads.begin() + r1), lora));
    std::vector<mlx_array> pending{logits.back().get()};
    if (cache_.keys.empty()) {
      cache_.keys.resize(group.keys.size());
      cache_.values.resize(group.values.size());
    }
    for (std::vector<Array>* side : {&cache_.keys, &cache_.values}) {
      std::vector<Array>& from = side == &cache_.keys ? group.keys : group.values;
      for (size_t l = 0; l < side->size(); ++l) {
        auto s = mx::shape_of(from[l].get());
        Array& buffer = (*side)[l];
        if (buffer.empty()) buffer = mx::zeros({batch, s[1], s[2], s[3]}, mx::dtype_of(from[l].get()));
        buffer = mx::slice_update(buffer.get(), from[l].get(), {r0, 0, 0, 0}, {r1, s[1], s[2], s[3]});
        pending.push_back(buffer.get());
      }
    }
    mx::eval(pending);
    cache_.offset = group.offset;
  }
  return concatenate_all(logits, 0);
}

Array BatchDecoder::sample(const mlx_array logits) {
  if (sampler_.temperature <= 0.0f) return mx::astype(mx::argmax_axis(logits, 1).get(), MLX_INT32);
  const int vocab = mx::dim(logits, 1);
  Array all;
  for (int i = 0; i < static_cast<int>(rows_.size()); ++i) {
    Array row = mx::reshape(mx::slice(logits, {i, 0}, {i + 1, vocab}).get(), {vocab});
    Array token = sample_token_lazy(row.get(), sampler_, rows_[i].key);
    all = all.empty() ? std::move(token) : mx::concatenate({all.get(), token.get()}, 0);
  }
  return all;
}

void BatchDecoder::drop(const std::vector<int>& finished) {
  std::vector<int32_t> kept_rows;
  std::vector<Row> kept;
  for (size_t i = 0; i < rows_.size(); ++i) {
    if (std::find(finished.begin(), finished.end(), rows_[i].prompt) != finished.end()) continue;
    kept_rows.push_back(static_cast<int32_t>(i));
    kept.push_back(std::move(rows_[i]));
  }
  rows_ = std::move(kept);
  if (!started_ || static_cast<int>(kept_rows.size()) == mx::dim(cache_.keys.at(0).get(), 0)) return;
  if (rows_.empty()) {
    cache_ = SteppedKVCache{};
    return;
  }
  // Pad columns no remaining row needs go too: a column's position is (column - pad), so taking
  // `trim` off both keeps every row's positions.
  int trim = rows_[0].pad;
  for (const Row& r : rows_) trim = std::min(trim, r.pad);
  Array index = mx::from_data(kept_rows.data(), {static_cast<int>(kept_rows.size())}, MLX_INT32);
  std::vector<mlx_array> buffers;
  for (std::vector<Array>* side : {&cache_.keys, &cache_.values}) {
    for (Array& buffer : *side) {
      Array taken = mx::take_axis(buffer.get(), index.get(), 0);
      auto s = mx::shape_of(taken.get());
      buffer = trim > 0 ? mx::slice(taken.get(), {0, 0, trim, 0}, {s[0], s[1], s[2], s[3]}) : std::move(taken);
      buffers.push_back(buffer.get());
    }
  }
  cache_.offset -= trim;
  for (Row& r : rows_) r.pad -= trim;
  // Evaluated now, so the full-batch buffers are released rather than kept alive by the graph.
  mx::eval(buffers);
}

Array BatchDecoder::last_logits() const {
  if (last_logits_.empty()) throw std::runtime_error("generation: no step has run yet");
  return mx::ref(last_logits_.get());
}

std::vector<int32_t> BatchDecoder::step(const std::vector<int>& finished) {
  drop(finished);
  std::vector<int32_t> out(prompts_.size(), -1);
  if (rows_.empty()) return out;
  const int batch = static_cast<int>(rows_.size());
  std::vector<mlx_array> lora = model_->lora_views();
  const std::vector<mlx_array>* adapters = use_lora_ ? &lora : nullptr;
  Array logits;
  if (!started_) {
    logits = prefill(adapters);
  } else {
    std::vector<int32_t> last;
    std::vector<int> pads;
    for (const Row& r : rows_) {
      last.push_back(r.last);
      pads.push_back(r.pad);
    }
    Array tokens = mx::from_data(last.data(), {batch, 1}, MLX_INT32);
    logits = model_->decode_logits(tokens.get(), cache_, pads, adapters);
  }
  Array next = sample(logits.get());
  last_logits_ = std::move(logits);
  // The cache is evaluated with the tokens so the graph does not grow with every step.
  std::vector<mlx_array> pending{next.get()};
  for (auto& k : cache_.keys) pending.push_back(k.get());
  for (auto& v : cache_.values) pending.push_back(v.get());
  mx::eval(pending);
  started_ = true;
  const int32_t* data = mlx_array_data_int32(next.get());
  if (data == nullptr) throw std::runtime_error("generation: the sampled tokens could not be read");
  for (int i = 0; i < batch; ++i) {
    rows_[i].last = data[i];
    out[rows_[i].prompt] = data[i];
  }
  return out;
}

}  // namespace mlxq::model
