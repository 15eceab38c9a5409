#include "device.h"

#include <unistd.h>

#include <string>

#include "addon_state.h"
#include "args.h"
#include "errors.h"
#include "guard.h"
#include "heap.h"

namespace mlxq {
namespace {

size_t physical_memory() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page_size) : 0;
}

struct DeviceDescription {
  std::string type;
  std::string name;
  std::string architecture;
  size_t memory_size = 0;
};

std::string info_string(const DeviceInfo& info, const char* key) {
  const char* value = nullptr;
  int rc = mlx_device_info_get_string(&value, info.get(), key);
  if (rc == 2) return "";
  check(rc, "mlx_device_info_get_string");
  return value != nullptr ? value : "";
}

size_t info_size(const DeviceInfo& info, const char* key) {
  size_t value = 0;
  int rc = mlx_device_info_get_size(&value, info.get(), key);
  if (rc == 2) return 0;
  check(rc, "mlx_device_info_get_size");
  return value;
}

// device(): Promise<{ type, name, architecture, memorySize }>
Napi::Value DeviceOf(const Napi::CallbackInfo& info) {
  return run_on_mlx(info.Env(), [](MlxThread& mlx) -> MlxThread::Settle {
    DeviceDescription d;
    d.type = mlx.device_type() == MLX_GPU ? "gpu" : "cpu";
    Device device(mlx_device_new_type(mlx.device_type(), 0));
    DeviceInfo di(mlx_device_info_new());
    check(mlx_device_info_get(di.out(), device.get()), "mlx_device_info_get");
    d.name = info_string(di, "device_name");
    d.architecture = info_string(di, "architecture");
    d.memory_size = info_size(di, "memory_size");
    // MLX's CPU backend reports no memory size; the CPU's memory is the machine's.
    if (d.memory_size == 0) d.memory_size = physical_memory();
    return [d](Napi::Env env) -> Napi::Value {
      Napi::Object out = Napi::Object::New(env);
      out.Set("type", d.type);
      out.Set("name", d.name);
      out.Set("architecture", d.architecture);
      out.Set("memorySize", static_cast<double>(d.memory_size));
      return out;
    };
  });
}

// useDevice("cpu" | "gpu"): Promise<void>
Napi::Value UseDevice(const Napi::CallbackInfo& info) {
  std::string type = args::string_at(info, 0, "type");
  if (type != "cpu" && type != "gpu") throw Napi::TypeError::New(info.Env(), "argument 'type' must be 'cpu' or 'gpu'");
  return run_on_mlx(info.Env(), [type](MlxThread& mlx) -> MlxThread::Settle {
    mlx.use_device(type == "gpu" ? MLX_GPU : MLX_CPU);
    return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
  });
}

// memory(): Promise<{ active, peak, cache, limit }> in bytes
Napi::Value Memory(const Napi::CallbackInfo& info) {
  return run_on_mlx(info.Env(), [](MlxThread&) -> MlxThread::Settle {
    size_t active = 0, peak = 0, cache = 0, limit = 0;
    check(mlx_get_active_memory(&active), "mlx_get_active_memory");
    check(mlx_get_peak_memory(&peak), "mlx_get_peak_memory");
    check(mlx_get_cache_memory(&cache), "mlx_get_cache_memory");
    check(mlx_get_memory_limit(&limit), "mlx_get_memory_limit");
    return [=](Napi::Env env) -> Napi::Value {
      Napi::Object out = Napi::Object::New(env);
      out.Set("active", static_cast<double>(active));
      out.Set("peak", static_cast<double>(peak));
      out.Set("cache", static_cast<double>(cache));
      out.Set("limit", static_cast<double>(limit));
      return out;
    };
  });
}

using SetLimit = int (*)(size_t*, size_t);

// setMemoryLimit(bytes) / setCacheLimit(bytes): Promise<number>, the previous limit
template <SetLimit Set>
Napi::Value SetLimitOf(const Napi::CallbackInfo& info) {
  int64_t bytes = args::int_at(info, 0, "bytes");
  if (bytes < 0) throw Napi::RangeError::New(info.Env(), "argument 'bytes' must be >= 0");
  return run_on_mlx(info.Env(), [bytes](MlxThread&) -> MlxThread::Settle {
    size_t previous = 0;
    check(Set(&previous, static_cast<size_t>(bytes)), "set limit");
    return [previous](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(previous)); };
  });
}

using Action = int (*)();

template <Action Do>
Napi::Value Run(const Napi::CallbackInfo& info) {
  return run_on_mlx(info.Env(), [](MlxThread&) -> MlxThread::Settle {
    check(Do(), "memory action");
    return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
  });
}

// clearCache(): Promise<void>. MLX's cache, then the allocator's free pages (the CPU backend's cache).
Napi::Value ClearCache(const Napi::CallbackInfo& info) {
  return run_on_mlx(info.Env(), [](MlxThread&) -> MlxThread::Settle {
    check(mlx_clear_cache(), "mlx_clear_cache");
    release_free_heap();
    return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
  });
}

}  // namespace

void init_device(Napi::Env env, Napi::Object exports) {
  exports.Set("device", Napi::Function::New<guarded<DeviceOf>>(env, "device"));
  exports.Set("useDevice", Napi::Function::New<guarded<UseDevice>>(env, "useDevice"));
  exports.Set("memory", Napi::Function::New<guarded<Memory>>(env, "memory"));
  exports.Set("setMemoryLimit", Napi::Function::New<guarded<SetLimitOf<mlx_set_memory_limit>>>(env, "setMemoryLimit"));
  exports.Set("setCacheLimit", Napi::Function::New<guarded<SetLimitOf<mlx_set_cache_limit>>>(env, "setCacheLimit"));
  exports.Set("resetPeakMemory", Napi::Function::New<guarded<Run<mlx_reset_peak_memory>>>(env, "resetPeakMemory"));
  exports.Set("clearCache", Napi::Function::New<guarded<ClearCache>>(env, "clearCache"));
}

}  // namespace mlxq
