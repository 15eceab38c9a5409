#include "allocation_limit.h"

#include <unistd.h>

#include <cstdio>
#include <stdexcept>

namespace mlxq {

double allocation_ceiling() {
  static const double ceiling = [] {
    const long pages = sysconf(_SC_PHYS_PAGES);
    const long page_size = sysconf(_SC_PAGE_SIZE);
    // Unknown: 2^40 still stops the sizes that wrap around or cannot exist.
    return pages > 0 && page_size > 0 ? static_cast<double>(pages) * static_cast<double>(page_size) : 1099511627776.0;
  }();
  return ceiling;
}

void check_allocatable(double bytes, const std::string& what) {
  if (bytes <= allocation_ceiling()) return;
  char amount[64];
  std::snprintf(amount, sizeof amount, "%.3g GB", bytes / 1e9);
  char limit[64];
  std::snprintf(limit, sizeof limit, "%.3g GB", allocation_ceiling() / 1e9);
  throw std::length_error(what + " would need " + amount + " in one array, more than this machine's memory (" + limit + ")");
}

double array_bytes(const mlx_array a) {
  double bytes = static_cast<double>(mlx_dtype_size(mlx_array_dtype(a)));
  const int* shape = mlx_array_shape(a);
  for (size_t i = 0; i < mlx_array_ndim(a); ++i) bytes *= static_cast<double>(shape[i]);
  return bytes;
}

}  // namespace mlxq
