#include "args.h"

#include <cmath>
#include <limits>

namespace mlxq::args {
namespace {

Napi::Value at(const Napi::CallbackInfo& info, size_t i) { return i < info.Length() ? info[i] : info.Env().Undefined(); }

[[noreturn]] void fail(const Napi::CallbackInfo& info, const char* name, const char* expected) {
  throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be " + expected);
}

int64_t to_int(const Napi::CallbackInfo& info, const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) fail(info, name, "an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9007199254740991.0) fail(info, name, "an integer");
  return static_cast<int64_t>(d);
}

}  // namespace

std::string string_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = at(info, i);
  if (!v.IsString()) fail(info, name, "a string");
  return v.As<Napi::String>().Utf8Value();
}

int64_t int_at(const Napi::CallbackInfo& info, size_t i, const char* name) { return to_int(info, at(info, i), name); }

double number_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = at(info, i);
  if (!v.IsNumber()) fail(info, name, "a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool bool_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = at(info, i);
  if (!v.IsBoolean()) fail(info, name, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::optional<int64_t> optional_int_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = at(info, i);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  return to_int(info, v, name);
}

std::optional<std::string> optional_string_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = at(info, i);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  return string_at(info, i, name);
}

std::vector<int> shape_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = at(info, i);
  if (!v.IsArray()) fail(info, name, "an array of dimensions");
  auto arr = v.As<Napi::Array>();
  std::vector<int> shape;
  shape.reserve(arr.Length());
  // MLX multiplies the dimensions without an overflow check, so a product past 2^64 would size a
  // small buffer for a huge array: refuse element counts no memory could hold.
  constexpr double kMaxElements = 9007199254740992.0;  // 2^53
  double elements = 1;
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    int64_t d = to_int(info, arr.Get(k), name);
    if (d < 0 || d > std::numeric_limits<int32_t>::max()) fail(info, name, "an array of dimensions in [0, 2^31)");
    shape.push_back(static_cast<int>(d));
    elements *= static_cast<double>(d);
  }
  if (elements > kMaxElements) {
    throw Napi::RangeError::New(info.Env(), std::string("argument '") + name + "' has more than 2^53 elements");
  }
  return shape;
}

std::vector<std::pair<std::string, std::string>> string_record_at(const Napi::CallbackInfo& info, size_t i,
                                                                  const char* name) {
  Napi::Value v = at(info, i);
  std::vector<std::pair<std::string, std::string>> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsObject()) fail(info, name, "an object of strings");
  auto obj = v.As<Napi::Object>();
  Napi::Array keys = obj.GetPropertyNames();
  for (uint32_t k = 0; k < keys.Length(); ++k) {
    Napi::Value key = keys.Get(k);
    Napi::Value value = obj.Get(key);
    if (!value.IsString()) fail(info, name, "an object whose values are strings");
    out.emplace_back(key.ToString().Utf8Value(), value.As<Napi::String>().Utf8Value());
  }
  return out;
}

}  // namespace mlxq::args
