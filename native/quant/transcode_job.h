// One ggufEncode/ggufTranscode call between its threads: planned on the JS thread, its MLX inputs
// (if any) made float32 rows on the MLX thread, the transcoding run on a libuv worker, the output
// handed to JS as a Buffer without a copy.
#pragma once

#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "../tensor.h"
#include "transcode.h"

namespace mlxq {

struct TranscodeJob {
  const char* entry = "ggufTranscode";  // the JS function's name, for messages
  quant::TranscodeSpec spec;
  std::string path;  // a file source (opened on the worker), or empty
  std::vector<int32_t> row_map;
  size_t first_row = 0;  // of the whole tensor, when the job covers a range of its rows (for messages)
  size_t bytes = 0;
  ArrayRef source_array;  // a tensor source as float32 rows; keeps spec.memory alive
  ArrayRef addend_array;  // keeps spec.addend alive
  std::unique_ptr<uint8_t[]> out;
  uint8_t* into = nullptr;  // a caller's buffer to write into instead of `out` (kept alive by the worker)

  TranscodeJob() = default;
  TranscodeJob(const TranscodeJob&) = delete;
  TranscodeJob& operator=(const TranscodeJob&) = delete;
  ~TranscodeJob() { release_arrays(); }

  /** Any thread: the MLX inputs are no longer read; their arrays are freed on the MLX thread. */
  void release_arrays();
};

/** MLX thread: the tensor's values as an evaluated float32 row-major array. */
ArrayRef float32_rows(const ArrayRef& box, MlxThread& mlx);

/**
 * JS thread: queues the transcoding on a libuv worker; the promise resolves to the output Buffer,
 * or, when `into` (a Uint8Array the job writes into) is given, to the number of bytes written.
 */
Napi::Promise queue_transcode(Napi::Env env, std::shared_ptr<TranscodeJob> job, Napi::Value into = Napi::Value());

}  // namespace mlxq
