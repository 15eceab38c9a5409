#include "io.h"

#include <unistd.h>

#include <cstdio>
#include <limits>
#include <map>

#include "args.h"
#include "dtype.h"
#include "errors.h"
#include "guard.h"
#include "file_util.h"
#include "safetensors_entries.h"
#include "tensor.h"

namespace mlxq {
namespace {

[[noreturn]] void rethrow_for(const std::string& path, const std::exception& e) {
  std::string message = e.what();
  if (message.rfind(path, 0) == 0) throw std::runtime_error(message);  // already names the file
  throw std::runtime_error(path + ": " + message);
}

struct Loaded {
  std::vector<std::pair<std::string, ArrayRef>> tensors;
  std::vector<std::pair<std::string, std::string>> metadata;
};

Loaded load_safetensors(MlxThread& mlx, const std::string& path) {
  regular_file_size(path);
  auto entries = read_safetensors(path, mlx.cpu_stream());
  Loaded loaded;
  for (auto& [name, value] : entries.tensors) loaded.tensors.emplace_back(name, evaluated(std::move(value)));
  loaded.metadata = std::move(entries.metadata);
  return loaded;
}

// loadSafetensors(path): Promise<{ tensors: Record<string, Tensor>, metadata: Record<string, string> }>
Napi::Value LoadSafetensors(const Napi::CallbackInfo& info) {
  std::string path = args::string_at(info, 0, "path");
  return run_on_mlx(info.Env(), [path](MlxThread& mlx) -> MlxThread::Settle {
    auto loaded = std::make_shared<Loaded>();
    try {
      *loaded = load_safetensors(mlx, path);
    } catch (const std::exception& e) {
      rethrow_for(path, e);
    }
    return [loaded](Napi::Env env) -> Napi::Value {
      Napi::Object tensors = Napi::Object::New(env);
      for (auto& [name, box] : loaded->tensors) tensors.Set(name, Tensor::Wrap(env, box));
      Napi::Object metadata = Napi::Object::New(env);
      for (auto& [key, value] : loaded->metadata) metadata.Set(key, value);
      Napi::Object out = Napi::Object::New(env);
      out.Set("tensors", tensors);
      out.Set("metadata", metadata);
      return out;
    };
  });
}

void save_safetensors_atomically(const std::string& path, const std::vector<std::pair<std::string, ArrayRef>>& tensors,
                                 const std::vector<std::pair<std::string, std::string>>& metadata, MlxThread& mlx) {
  MapStringToArray arrays(mlx_map_string_to_array_new());
  for (const auto& [name, box] : tensors) {
    check(mlx_map_string_to_array_insert(arrays.get(), name.c_str(), box->array.get()), "mlx_map_string_to_array_insert");
  }
  MapStringToString meta(mlx_map_string_to_string_new());
  for (const auto& [key, value] : metadata) {
    check(mlx_map_string_to_string_insert(meta.get(), key.c_str(), value.c_str()), "mlx_map_string_to_string_insert");
  }
  // mlx-c appends ".safetensors" to a name without it, so the temporary name keeps that ending.
  const std::string tmp = temp_name_beside(path, ".safetensors");
  try {
    check(mlx_save_safetensors(tmp.c_str(), arrays.get(), meta.get()), "mlx_save_safetensors");
    fsync_path(tmp, false);
    // MLX's writer does not report short writes (a full disk): read the file back before trusting it.
    const size_t count = read_safetensors(tmp, mlx.cpu_stream()).tensors.size();
    if (count != tensors.size()) throw std::runtime_error("written file holds " + std::to_string(count) + " of " +
                                                          std::to_string(tensors.size()) + " tensors");
    if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename the temporary file into place");
    fsync_path(parent_dir(path), true);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

// saveSafetensors(path, tensors: Record<string, Tensor>, metadata?: Record<string, string>): Promise<void>
// Written to a temporary file, checked, then renamed over `path`: a failure leaves any old file intact.
Napi::Value SaveSafetensors(const Napi::CallbackInfo& info) {
  std::string path = args::string_at(info, 0, "path");
  if (path.empty()) throw Napi::TypeError::New(info.Env(), "argument 'path' must not be empty");
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(info.Env(), "argument 'tensors' must be an object");
  std::vector<std::pair<std::string, ArrayRef>> tensors;
  Napi::Object record = info[1].As<Napi::Object>();
  Napi::Array names = record.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); ++i) {
    std::string name = names.Get(i).ToString().Utf8Value();
    tensors.emplace_back(name, Tensor::From(record.Get(name), name.c_str()));
  }
  if (tensors.empty()) throw Napi::TypeError::New(info.Env(), "argument 'tensors' must hold at least one tensor");
  auto metadata = args::string_record_at(info, 2, "metadata");
  return run_on_mlx(info.Env(), [path, tensors, metadata](MlxThread& mlx) -> MlxThread::Settle {
    try {
      save_safetensors_atomically(path, tensors, metadata, mlx);
    } catch (const std::exception& e) {
      rethrow_for(path, e);
    }
    return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
  });
}

// tensorFromFile(path, offset, length, dtype, shape): Promise<Tensor>
Napi::Value TensorFromFile(const Napi::CallbackInfo& info) {
  std::string path = args::string_at(info, 0, "path");
  int64_t offset = args::int_at(info, 1, "offset");
  int64_t length = args::int_at(info, 2, "length");
  mlx_dtype dtype;
  try {
    dtype = dtype_from_name(args::string_at(info, 3, "dtype"));
  } catch (const std::invalid_argument& e) {
    throw Napi::TypeError::New(info.Env(), std::string("argument 'dtype': ") + e.what());
  }
  std::vector<int> shape = args::shape_at(info, 4, "shape");
  if (offset < 0 || length < 0) throw Napi::RangeError::New(info.Env(), "offset and length must be >= 0");
  size_t elements = 1;
  for (int d : shape) elements *= static_cast<size_t>(d);
  if (elements * mlx_dtype_size(dtype) != static_cast<size_t>(length)) {
    throw Napi::RangeError::New(info.Env(), path + ": length " + std::to_string(length) + " does not match shape and dtype (" +
                                                std::to_string(elements * mlx_dtype_size(dtype)) + " bytes)");
  }
  return run_on_mlx(info.Env(), [path, offset, length, dtype, shape](MlxThread&) -> MlxThread::Settle {
    try {
      uint64_t size = regular_file_size(path);
      uint64_t end = static_cast<uint64_t>(offset) + static_cast<uint64_t>(length);
      if (end > size) {
        throw std::runtime_error("byte range [" + std::to_string(offset) + ", " + std::to_string(end) +
                                 ") is past the end of the file (" + std::to_string(size) + " bytes)");
      }
      std::vector<uint8_t> bytes(static_cast<size_t>(length));
      read_exact(path, static_cast<uint64_t>(offset), bytes.size(), bytes.data());
      Array array(mlx_array_new_data(bytes.data(), shape.data(), static_cast<int>(shape.size()), dtype));
      if (array.empty()) check(1, "mlx_array_new_data");
      return settle_tensor(evaluated(std::move(array)));
    } catch (const std::exception& e) {
      rethrow_for(path, e);
    }
  });
}

}  // namespace

void init_io(Napi::Env env, Napi::Object exports) {
  exports.Set("loadSafetensors", Napi::Function::New<guarded<LoadSafetensors>>(env, "loadSafetensors"));
  exports.Set("saveSafetensors", Napi::Function::New<guarded<SaveSafetensors>>(env, "saveSafetensors"));
  exports.Set("tensorFromFile", Napi::Function::New<guarded<TensorFromFile>>(env, "tensorFromFile"));
}

}  // namespace mlxq
