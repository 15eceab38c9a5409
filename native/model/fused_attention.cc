#include "model/fused_attention.h"

#include <algorithm>
#include <string>
#include <vector>

#include "errors.h"
#include "mx.h"

namespace mlxq::model {

int attention_block_rows(const BuildOptions& build) {
  if (build.attention_query_block < 0) return 0;
  if (build.attention_query_block > 0) return build.attention_query_block;
  // GPU backends have fused attention kernels that never hold the scores; blocks would only add launches.
  Device dev(mlx_device_new());
  check(mlx_stream_get_device(dev.out(), mx::stream()), "mlx_stream_get_device");
  mlx_device_type type;
  check(mlx_device_get_type(&type, dev.get()), "mlx_device_get_type");
  return type == MLX_CPU ? 128 : 0;
}

Array blocked_causal_attention(const mlx_array q, const mlx_array k, const mlx_array v, float scale,
                               const char* mask_mode, const mlx_array mask, int rows) {
  auto qs = mx::shape_of(q);
  auto ks = mx::shape_of(k);
  auto vs = mx::shape_of(v);
  const int b = qs[0], hq = qs[1], l = qs[2], d = qs[3], hk = ks[1], dv = vs[3];
  const bool causal = std::string(mask_mode) == "causal";
  std::vector<Array> parts;
  for (int start = 0; start < l; start += rows) {
    const int stop = std::min(l, start + rows);
    Array qi = mx::slice(q, {0, 0, start, 0}, {b, hq, stop, d});
    Array ki = mx::slice(k, {0, 0, 0, 0}, {b, hk, stop, d});
    Array vi = mx::slice(v, {0, 0, 0, 0}, {b, hk, stop, dv});
    Array mi;
    if (!causal) {
      mx::Shape hi = mx::shape_of(mask), lo(hi.size(), 0);
      const size_t rows_axis = hi.size() - 2;
      lo[rows_axis] = start;
      hi[rows_axis] = stop;
      hi[rows_axis + 1] = stop;
      mi = mx::slice(mask, lo, hi);
    }
    // In "causal" mode MLX aligns the queries with the last keys, which is where this block ends.
    parts.push_back(mx::attention(qi.get(), ki.get(), vi.get(), scale, mask_mode, causal ? mlx_array{} : mi.get()));
  }
  std::vector<mlx_array> views;
  for (const auto& p : parts) views.push_back(p.get());
  return views.size() == 1 ? std::move(parts[0]) : mx::concatenate(views, 2);
}

}  // namespace mlxq::model
