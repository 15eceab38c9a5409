#include "model/decode_gemv.h"

#include <dlfcn.h>

#include <vector>

#include "mx.h"

#if __has_include(<cblas.h>)
#include <cblas.h>
#define MLXQ_HAVE_CBLAS_HEADER 1
#endif

namespace mlxq::model {

#ifdef MLXQ_HAVE_CBLAS_HEADER
namespace {

using Sgemv = decltype(&cblas_sgemv);

/**
 * The cblas_sgemv of the BLAS MLX itself loaded (found by soname, never loading another copy),
 * so its thread settings are MLX's; nullptr when none is loaded.
 */
Sgemv loaded_sgemv() {
  static const Sgemv fn = []() -> Sgemv {
    for (const char* lib : {"libopenblas.so.0", "libopenblas.so", "libblas.so.3", "libcblas.so.3"}) {
      void* handle = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
      if (handle == nullptr) continue;
      // The handle stays open: the library is MLX's dependency and is never unloaded anyway.
      if (void* symbol = dlsym(handle, "cblas_sgemv")) return reinterpret_cast<Sgemv>(symbol);
    }
    return nullptr;
  }();
  return fn;
}

bool on_cpu() {
  mlx_device device = mlx_device_new();
  mlx_device_type type = MLX_GPU;
  const bool ok = mlx_stream_get_device(&device, mx::stream()) == 0 && mlx_device_get_type(&type, device) == 0;
  mlx_device_free(device);
  return ok && type == MLX_CPU;
}

bool row_contiguous_2d(const mlx_array a) {
  if (mlx_array_ndim(a) != 2) return false;
  const size_t* strides = mlx_array_strides(a);
  return strides != nullptr && strides[1] == 1 && strides[0] == static_cast<size_t>(mx::dim(a, 1));
}

}  // namespace

std::optional<Array> cpu_gemv(const mlx_array x, const mlx_array w) {
  Sgemv sgemv = loaded_sgemv();
  if (sgemv == nullptr || mx::dtype_of(x) != MLX_FLOAT32 || mx::dtype_of(w) != MLX_FLOAT32) return std::nullopt;
  if (mlx_array_ndim(w) != 2 || mlx_array_size(x) != static_cast<size_t>(mx::dim(w, 1)) || !on_cpu()) return std::nullopt;
  const int m = mx::dim(w, 0), n = mx::dim(w, 1);
  Array row = mx::contiguous(mx::reshape(x, {1, n}).get());
  // Strides and data exist once evaluated (a loaded weight already is).
  mx::eval({row.get(), w});
  if (!row_contiguous_2d(w)) return std::nullopt;
  const float* xp = mlx_array_data_float32(row.get());
  const float* wp = mlx_array_data_float32(w);
  if (xp == nullptr || wp == nullptr) return std::nullopt;
  std::vector<float> y(static_cast<size_t>(m));
  sgemv(CblasRowMajor, CblasNoTrans, m, n, 1.0f, wp, n, xp, 1, 0.0f, y.data(), 1);
  return mx::from_data(y.data(), {1, m}, MLX_FLOAT32);
}

#else

std::optional<Array> cpu_gemv(const mlx_array, const mlx_array) { return std::nullopt; }

#endif

}  // namespace mlxq::model
