#include "guard.h"

#include <cstdio>

namespace mlxq {

Napi::Error js_error_of_current_exception(Napi::Env env) {
  try {
    throw;
  } catch (const std::invalid_argument& e) {
    return Napi::TypeError::New(env, e.what());
  } catch (const std::out_of_range& e) {
    return Napi::RangeError::New(env, e.what());
  } catch (const std::length_error& e) {
    return Napi::RangeError::New(env, e.what());
  } catch (const std::bad_alloc&) {
    return Napi::RangeError::New(env, "out of memory: the native allocation failed");
  } catch (const std::exception& e) {
    return Napi::Error::New(env, e.what()[0] != '\0' ? e.what() : "native operation failed");
  } catch (...) {
    return Napi::Error::New(env, "native operation failed with an exception of unknown type");
  }
}

void check_receiver(const Napi::CallbackInfo& info, const Napi::FunctionReference& constructor, const char* class_name) {
  Napi::Value self = info.This();
  if (!self.IsObject() || constructor.IsEmpty() || !self.As<Napi::Object>().InstanceOf(constructor.Value())) {
    throw Napi::TypeError::New(info.Env(), std::string("this must be a ") + class_name);
  }
}

void report_dropped_exception(const char* where, const char* what) noexcept {
  std::fprintf(stderr, "mlx-qlora: %s failed: %s\n", where, what);
}

}  // namespace mlxq
