// One Node environment's door to the process-wide MLX thread (mlx_thread.h).
//
// Each environment (the main thread, each worker) has its own JS thread, so each needs its own
// thread-safe function to settle its Promises, and its own count of pending jobs that keeps its
// event loop alive. Jobs carry the client they came from; once the client is closed (environment
// teardown) its jobs still run their releases on the MLX thread but skip the work and the result.
#pragma once

#include <napi.h>

#include <memory>
#include <mutex>

#include "mlx_thread.h"

namespace mlxq {

class MlxClient : public std::enable_shared_from_this<MlxClient> {
 public:
  /** JS thread, at environment init: attaches the environment to the MLX thread. */
  static std::shared_ptr<MlxClient> open(Napi::Env env);

  /** JS thread: queue work, get a Promise of its settled value. */
  Napi::Promise submit(Napi::Env env, MlxThread::Work work);
  /**
   * JS thread, at environment teardown: queued jobs are dropped (their Promises can no longer be
   * settled), the thread-safe function is released, and the environment detaches.
   */
  void close();

 private:
  struct Job;
  static void deliver(Napi::Env env, Napi::Function, MlxClient* self, Job* job);
  /** JS thread: resolves or rejects the job's Promise; throws nothing. */
  static void settle(Napi::Env env, Job& job) noexcept;
  using Completion = Napi::TypedThreadSafeFunction<MlxClient, Job, &MlxClient::deliver>;
  MlxClient() = default;
  bool closed() const;
  /** MLX thread: hands a finished job to the JS thread, or drops it if the client is closed. */
  void complete(std::unique_ptr<Job> job);

  // Guards closed_ against completion_ calls: no NonBlockingCall may follow the Release.
  mutable std::mutex mutex_;
  bool closed_ = false;
  std::unique_ptr<Completion> completion_;
  size_t pending_ = 0;  // JS thread only
};

}  // namespace mlxq
