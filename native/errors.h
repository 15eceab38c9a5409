// MLX errors as C++ exceptions: mlx-c reports failures through a process-wide handler plus a
// non-zero return code; we keep the handler's message per thread and throw it at the call site.
#pragma once

#include <stdexcept>
#include <string>

namespace mlxq {

/** An error raised by MLX itself; its message is MLX's own text. */
class MlxError : public std::runtime_error {
 public:
  explicit MlxError(const std::string& message) : std::runtime_error(message) {}
};

/** Replaces mlx-c's default handler (which calls exit()) with one that records the message. */
void install_error_handler();

/** Throws MlxError with the last MLX message on this thread if rc is non-zero. */
void check(int rc, const char* what);

/**
 * Keeps the real reason a native closure (forward pass under value_and_grad or checkpoint)
 * failed: MLX only reports "mlx_closure returned a non-zero value". check() prefers it.
 */
void stash_closure_error(const std::string& message);

/** The message MLX last reported on this thread, cleared by the read. */
std::string take_last_error();

}  // namespace mlxq
