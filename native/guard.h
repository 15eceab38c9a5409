// Every C++ exception that reaches a JS-facing callback becomes a JS error. node-addon-api turns
// only Napi::Error into a JS exception; anything else (std::invalid_argument from a dtype name,
// std::bad_alloc, MLX's own exceptions) would leave the callback and abort the process. Functions
// register through guarded<F>; class methods and accessors through their class's Guarded<&T::M>
// (a member template: InstanceMethod takes only members of T); constructors and finalizers catch
// for themselves.
#pragma once

#include <napi.h>

#include <exception>
#include <new>
#include <stdexcept>
#include <string>

namespace mlxq {

/** The JS error for the exception being handled: TypeError/RangeError where the C++ type says so. */
Napi::Error js_error_of_current_exception(Napi::Env env);

/** Runs `body`, turning any exception it throws into a thrown Napi::Error. */
template <typename Body>
auto to_js_errors(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;  // already a JS error; node-addon-api throws it into JS
  } catch (...) {
    throw js_error_of_current_exception(env);
  }
}

/**
 * Throws a TypeError unless `this` is an instance of the class. node-addon-api unwraps `this`
 * without checking its class, and V8 checks the receiver of a class's methods but not of its
 * accessors: Tensor's `shape` getter called on a Model would read a Model as a Tensor.
 */
void check_receiver(const Napi::CallbackInfo& info, const Napi::FunctionReference& constructor, const char* class_name);

/** A free callback that can throw anything, made safe to register with Napi::Function::New. */
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  return to_js_errors(info.Env(), [&] { return F(info); });
}

/** Writes to stderr: where nothing can receive an error, it is at least not silent. */
void report_dropped_exception(const char* where, const char* what) noexcept;

/** A callback that must not throw at all (finalizers, cleanup): what it throws is reported and dropped. */
template <typename Body>
void without_exceptions(const char* where, Body&& body) noexcept {
  try {
    body();
  } catch (const std::exception& e) {
    report_dropped_exception(where, e.what());
  } catch (...) {
    report_dropped_exception(where, "an exception of unknown type");
  }
}

}  // namespace mlxq
