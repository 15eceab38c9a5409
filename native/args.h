// Reading JS arguments on the JS thread; a wrong argument throws a TypeError naming it.
#pragma once

#include <napi.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mlxq::args {

std::string string_at(const Napi::CallbackInfo& info, size_t i, const char* name);
int64_t int_at(const Napi::CallbackInfo& info, size_t i, const char* name);
double number_at(const Napi::CallbackInfo& info, size_t i, const char* name);
bool bool_at(const Napi::CallbackInfo& info, size_t i, const char* name);
/** undefined or null give nullopt. */
std::optional<int64_t> optional_int_at(const Napi::CallbackInfo& info, size_t i, const char* name);
std::optional<std::string> optional_string_at(const Napi::CallbackInfo& info, size_t i, const char* name);
/** An array of non-negative int32 dimensions. */
std::vector<int> shape_at(const Napi::CallbackInfo& info, size_t i, const char* name);
/** A string → string record. */
std::vector<std::pair<std::string, std::string>> string_record_at(const Napi::CallbackInfo& info, size_t i,
                                                                  const char* name);

}  // namespace mlxq::args
