#include "parallel_encode.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace mlxq::quant {
namespace {

// Below this many values per thread, starting a thread costs more than it saves.
constexpr size_t kMinValuesPerThread = 1 << 16;

}  // namespace

unsigned default_encode_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

void encode_parallel(const BlockTypeInfo& type, const float* src, size_t count, uint8_t* dst, unsigned threads) {
  if (count == 0) return;
  const size_t blocks = count / type.block_elements;
  const size_t by_size = std::max<size_t>(1, count / kMinValuesPerThread);
  const size_t parts = std::max<size_t>(1, std::min({static_cast<size_t>(threads), by_size, blocks}));
  auto encode_part = [&](size_t part) {
    const size_t first = blocks * part / parts;
    const size_t last = blocks * (part + 1) / parts;
    encode_values(type.type, src + first * type.block_elements, (last - first) * type.block_elements,
                  dst + first * type.block_bytes);
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
}

}  // namespace mlxq::quant
