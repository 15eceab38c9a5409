#include "errors.h"

#include <mlx/c/error.h>

namespace mlxq {
namespace {

thread_local std::string last_error;

void record_error(const char* message, void* /*data*/) {
  last_error = message != nullptr ? message : "unknown MLX error";
}

}  // namespace

void install_error_handler() { mlx_set_error_handler(&record_error, nullptr, nullptr); }

std::string take_last_error() {
  std::string message;
  message.swap(last_error);
  return message;
}

void check(int rc, const char* what) {
  if (rc == 0) return;
  std::string message = take_last_error();
  if (message.empty()) message = std::string(what) + " failed (mlx-c returned " + std::to_string(rc) + ")";
  throw MlxError(message);
}

}  // namespace mlxq
