#include "errors.h"

#include <mlx/c/error.h>

namespace mlxq {
namespace {

thread_local std::string last_error;
thread_local std::string closure_error;

void record_error(const char* message, void* /*data*/) {
  last_error = message != nullptr ? message : "unknown MLX error";
}

}  // namespace

void stash_closure_error(const std::string& message) {
  if (closure_error.empty()) closure_error = message;
}

void install_error_handler() { mlx_set_error_handler(&record_error, nullptr, nullptr); }

std::string take_last_error() {
  std::string message;
  message.swap(last_error);
  return message;
}

void check(int rc, const char* what) {
  if (rc == 0) return;
  std::string message = take_last_error();
  if (!closure_error.empty()) {
    message = std::move(closure_error);
    closure_error.clear();
  }
  if (message.empty()) message = std::string(what) + " failed (mlx-c returned " + std::to_string(rc) + ")";
  throw MlxError(message);
}

}  // namespace mlxq
