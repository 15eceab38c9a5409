#include "safetensors_entries.h"

#include "errors.h"

namespace mlxq {

SafetensorsEntries read_safetensors(const std::string& path, mlx_stream stream) {
  MapStringToArray arrays(mlx_map_string_to_array_new());
  MapStringToString meta(mlx_map_string_to_string_new());
  check(mlx_load_safetensors(arrays.out(), meta.out(), path.c_str(), stream), "mlx_load_safetensors");
  SafetensorsEntries out;
  MapStringToArrayIterator it(mlx_map_string_to_array_iterator_new(arrays.get()));
  for (;;) {
    const char* key = nullptr;
    Array value;
    int rc = mlx_map_string_to_array_iterator_next(&key, value.out(), it.get());
    if (rc == 2) break;
    check(rc, "mlx_map_string_to_array_iterator_next");
    out.tensors.emplace_back(key, std::move(value));
  }
  MapStringToStringIterator mit(mlx_map_string_to_string_iterator_new(meta.get()));
  for (;;) {
    const char* key = nullptr;
    const char* value = nullptr;
    int rc = mlx_map_string_to_string_iterator_next(&key, &value, mit.get());
    if (rc == 2) break;
    check(rc, "mlx_map_string_to_string_iterator_next");
    out.metadata.emplace_back(key, value);
  }
  return out;
}

}  // namespace mlxq
