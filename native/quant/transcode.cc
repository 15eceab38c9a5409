#include "transcode.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace mlxq::quant {
namespace {

// Rows are taken in chunks of about this many values: 1 MiB of float32 per thread stays in cache
// between decoding and encoding.
constexpr size_t kChunkValues = 1 << 18;
// Below this many values per thread, starting a thread costs more than it saves.
constexpr size_t kMinValuesPerThread = 1 << 16;

/** Index of the first NaN or infinity in x[0..n), or n. Scans in chunks so the common case vectorizes. */
size_t first_non_finite(const float* x, size_t n) {
  constexpr size_t kScan = 256;
  for (size_t start = 0; start < n; start += kScan) {
    const size_t end = std::min(n, start + kScan);
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

bool same_float_type(const DecodeTypeInfo& from, const BlockTypeInfo& to) {
  return from.block_elements == 1 && std::strcmp(from.name, to.name) == 0;
}

/** One transcoding shared by its threads: the next chunk to take and the first problem seen. */
class Transcoder {
 public:
  Transcoder(const TranscodeSpec& spec, uint8_t* dst)
      : s_(spec),
        dst_(dst),
        src_row_bytes_(source_row_bytes(spec)),
        dst_row_bytes_(encoded_bytes(*spec.to, 1, spec.cols)),
        copy_(same_float_type(*spec.from, *spec.to) && spec.addend == nullptr),
        chunk_rows_(std::max<size_t>(1, kChunkValues / std::max<size_t>(1, spec.cols))) {}

  size_t chunks() const { return (s_.rows + chunk_rows_ - 1) / chunk_rows_; }

  /** One thread's share: chunks until none is left or a problem was found. */
  void run() {
    // Source bytes and decoded floats of one chunk; uint64_t storage keeps float alignment.
    std::unique_ptr<uint64_t[]> bytes;
    std::unique_ptr<float[]> floats;
    try {
      bytes.reset(new uint64_t[(chunk_rows_ * src_row_bytes_ + 7) / 8]);
      if (!copy_ && s_.to->type != BlockType::F32) floats.reset(new float[chunk_rows_ * s_.cols]);
    } catch (const std::bad_alloc&) {
      record({TranscodeProblem::kOutOfMemory, 0, 0});
      return;
    }
    for (;;) {
      const size_t first = next_.fetch_add(chunk_rows_);
      if (first >= s_.rows || stopped_.load(std::memory_order_relaxed)) return;
      const size_t n = std::min(chunk_rows_, s_.rows - first);
      const TranscodeProblem p = chunk(first, n, reinterpret_cast<uint8_t*>(bytes.get()), floats.get());
      if (p.kind != TranscodeProblem::kNone) record(p);
    }
  }

  TranscodeProblem problem() const { return problem_; }

 private:
  void record(const TranscodeProblem& p) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (problem_.kind == TranscodeProblem::kNone || p.value_index < problem_.value_index) problem_ = p;
    stopped_ = true;
  }

  /** Reads `len` bytes at source byte `at` into `into`. */
  TranscodeProblem read_at(uint64_t at, size_t len, uint8_t* into, size_t value_index) const {
    if (s_.fd < 0) {
      std::memcpy(into, s_.memory + at, len);
      return {};
    }
    size_t got = 0;
    while (got < len) {
      const ssize_t r = ::pread(s_.fd, into + got, len - got, static_cast<off_t>(s_.offset + at + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return {TranscodeProblem::kReadError, value_index, errno};
      // The first row not wholly read.
      if (r == 0) return {TranscodeProblem::kEndOfFile, value_index + got / src_row_bytes_ * s_.cols, 0};
      got += static_cast<size_t>(r);
    }
    return {};
  }

  /** Source rows of output rows [first, first + n) into `into`, one read per run of consecutive source rows. */
  TranscodeProblem read_rows(size_t first, size_t n, uint8_t* into) const {
    for (size_t i = 0; i < n;) {
      const size_t source = s_.row_map ? static_cast<size_t>(s_.row_map[first + i]) : first + i;
      size_t run = 1;
      while (i + run < n && (s_.row_map ? static_cast<size_t>(s_.row_map[first + i + run]) : first + i + run) == source + run) ++run;
      const TranscodeProblem p = read_at(source * src_row_bytes_, run * src_row_bytes_, into + i * src_row_bytes_, (first + i) * s_.cols);
      if (p.kind != TranscodeProblem::kNone) return p;
      i += run;
    }
    return {};
  }

  /** The chunk's values in float32 (plus the addend): decoded into `into`, or float32 source bytes as they are. */
  const float* decoded(const uint8_t* src, size_t count, size_t at, float* into) const {
    if (s_.from->type == DecodeType::F32 && s_.addend == nullptr && s_.to->type != BlockType::F32) {
      return reinterpret_cast<const float*>(src);  // aligned: memory is an MLX array, the buffer uint64_t storage
    }
    decode_blocks(s_.from->type, src, count / s_.from->block_elements, into);
    if (s_.addend != nullptr) {
      const float* add = s_.addend + at;
      for (size_t i = 0; i < count; ++i) into[i] = into[i] + add[i];
    }
    return into;
  }

  TranscodeProblem chunk(size_t first, size_t n, uint8_t* bytes, float* floats) const {
    const size_t count = n * s_.cols;
    const size_t at = first * s_.cols;
    uint8_t* out = dst_ + first * dst_row_bytes_;
    if (copy_) {
      const TranscodeProblem p = read_rows(first, n, out);
      if (p.kind != TranscodeProblem::kNone) return p;
      const size_t bad = first_invalid_block(s_.to->type, out, count);
      if (bad < count) return {TranscodeProblem::kNonFiniteInput, at + bad, 0};
      return {};
    }
    const uint8_t* src = s_.fd < 0 && s_.row_map == nullptr ? s_.memory + first * src_row_bytes_ : bytes;
    if (src == bytes) {
      const TranscodeProblem p = read_rows(first, n, bytes);
      if (p.kind != TranscodeProblem::kNone) return p;
    }
    const float* values = decoded(src, count, at, s_.to->type == BlockType::F32 ? reinterpret_cast<float*>(out) : floats);
    const size_t bad_input = first_non_finite(values, count);
    if (bad_input < count) return {TranscodeProblem::kNonFiniteInput, at + bad_input, 0};
    if (s_.to->type == BlockType::F32) return {};
    encode_values(s_.to->type, values, count, out);
    const size_t blocks = count / s_.to->block_elements;
    const size_t bad_block = first_invalid_block(s_.to->type, out, blocks);
    if (bad_block < blocks) return {TranscodeProblem::kOverflow, at + bad_block * s_.to->block_elements, 0};
    return {};
  }

  const TranscodeSpec& s_;
  uint8_t* dst_;
  size_t src_row_bytes_;
  size_t dst_row_bytes_;
  bool copy_;
  size_t chunk_rows_;
  std::atomic<size_t> next_{0};
  std::atomic<bool> stopped_{false};
  std::mutex mutex_;
  TranscodeProblem problem_;
};

}  // namespace

unsigned default_encode_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

size_t source_row_bytes(const TranscodeSpec& spec) { return spec.cols / spec.from->block_elements * spec.from->block_bytes; }

TranscodeProblem transcode_parallel(const TranscodeSpec& spec, uint8_t* dst) {
  if (spec.rows == 0 || spec.cols == 0) return {};
  Transcoder transcoder(spec, dst);
  const size_t by_size = std::max<size_t>(1, spec.rows * spec.cols / kMinValuesPerThread);
  const size_t parts = std::max<size_t>(1, std::min({static_cast<size_t>(spec.threads), by_size, transcoder.chunks()}));
  std::vector<std::thread> workers;
  workers.reserve(parts - 1);
  try {
    for (size_t part = 1; part < parts; ++part) workers.emplace_back([&transcoder] { transcoder.run(); });
  } catch (...) {
    // A thread that could not start: finish the started ones before reporting, they write into dst.
    for (auto& w : workers) w.join();
    throw;
  }
  transcoder.run();
  for (auto& w : workers) w.join();
  return transcoder.problem();
}

}  // namespace mlxq::quant
