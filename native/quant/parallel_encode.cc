#include "parallel_encode.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

namespace mlxq::quant {
namespace {

// Below this many values per thread, starting a thread costs more than it saves.
constexpr size_t kMinValuesPerThread = 1 << 16;

/** Index of the first NaN or infinity in x[0..n), or n. Scans in chunks so the common case vectorizes. */
size_t first_non_finite(const float* x, size_t n) {
  constexpr size_t kChunk = 256;
  for (size_t start = 0; start < n; start += kChunk) {
    const size_t end = std::min(n, start + kChunk);
    uint32_t any = 0;
    for (size_t i = start; i < end; ++i) {
      uint32_t u;
      std::memcpy(&u, x + i, sizeof u);
      any |= static_cast<uint32_t>((u & 0x7F800000u) == 0x7F800000u);
    }
    if (!any) continue;
    for (size_t i = start; i < end; ++i) {
      if (!std::isfinite(x[i])) return i;
    }
  }
  return n;
}

}  // namespace

unsigned default_encode_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

EncodeProblem encode_parallel(const BlockTypeInfo& type, const float* src, size_t count, uint8_t* dst, unsigned threads) {
  if (count == 0) return {};
  const size_t blocks = count / type.block_elements;
  const size_t by_size = std::max<size_t>(1, count / kMinValuesPerThread);
  const size_t parts = std::max<size_t>(1, std::min({static_cast<size_t>(threads), by_size, blocks}));
  std::vector<EncodeProblem> problems(parts);  // each part's first problem
  auto encode_part = [&](size_t part) {
    const size_t first = blocks * part / parts;
    const size_t n = blocks * (part + 1) / parts - first;
    const float* x = src + first * type.block_elements;
    uint8_t* out = dst + first * type.block_bytes;
    const size_t bad_input = first_non_finite(x, n * type.block_elements);
    if (bad_input < n * type.block_elements) {
      problems[part] = {EncodeProblem::kNonFiniteInput, first * type.block_elements + bad_input};
      return;
    }
    encode_values(type.type, x, n * type.block_elements, out);
    const size_t bad_block = first_invalid_block(type.type, out, n);
    if (bad_block < n) problems[part] = {EncodeProblem::kOverflow, (first + bad_block) * type.block_elements};
  };
  std::vector<std::thread> workers;
  workers.reserve(parts - 1);
  try {
    for (size_t part = 1; part < parts; ++part) workers.emplace_back(encode_part, part);
  } catch (...) {
    // A thread that could not start: finish the started ones before reporting, they write into dst.
    for (auto& w : workers) w.join();
    throw;
  }
  encode_part(0);
  for (auto& w : workers) w.join();
  for (const auto& p : problems) {
    if (p.kind != EncodeProblem::kNone) return p;
  }
  return {};
}

}  // namespace mlxq::quant
