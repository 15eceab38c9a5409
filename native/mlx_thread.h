// The one native thread that owns every MLX object (design.md, native rule 2).
//
// Since MLX 0.31.2 default streams, GPU command encoders and the RNG sequence are per thread, and a
// lazy array can only be evaluated on the thread that made it. So every MLX call runs here: JS
// enqueues a job and gets a Promise; the job's result is turned into JS values on the JS thread
// through one thread-safe function. The event loop never waits on MLX.
#pragma once

#include <napi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "handles.h"

namespace mlxq {

class MlxThread : public std::enable_shared_from_this<MlxThread> {
 public:
  /** Runs on the JS thread; turns a finished job's C++ result into a JS value. */
  using Settle = std::function<Napi::Value(Napi::Env)>;
  /** Runs on the MLX thread; may throw (MlxError or std::exception) to reject the promise. */
  using Work = std::function<Settle(MlxThread&)>;

  static std::shared_ptr<MlxThread> start(Napi::Env env);
  ~MlxThread();

  /** JS thread: queue work, get a Promise of its settled value. */
  Napi::Promise submit(Napi::Env env, Work work);
  /** Any thread: queue a task with no result (releasing arrays). Runs inline once stopped. */
  void post(std::function<void()> task);
  /** JS thread, at environment teardown: drop pending jobs, finish releases, join. */
  void stop();

  // MLX thread only.
  const mlx_stream& stream() const { return stream_.get(); }
  const mlx_stream& cpu_stream() const { return cpu_stream_.get(); }
  /** Switches the stream later jobs use; "gpu" fails where MLX has no GPU backend. */
  void use_device(mlx_device_type type);
  mlx_device_type device_type() const { return device_type_; }

 private:
  struct Job;
  struct Task {
    std::function<void()> run;
    bool is_job;  // dropped at teardown, unlike releases
  };
  MlxThread() = default;
  void loop();
  void init_streams();
  static void deliver(Napi::Env env, Napi::Function, MlxThread* self, Job* job);

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> queue_;
  bool stopping_ = false;
  bool stopped_ = false;
  std::thread thread_;

  // Touched only on the JS thread.
  std::unique_ptr<Napi::TypedThreadSafeFunction<MlxThread, Job, &MlxThread::deliver>> completion_;
  size_t pending_ = 0;

  // Touched only on the MLX thread.
  Stream stream_;
  Stream cpu_stream_;
  mlx_device_type device_type_ = MLX_CPU;
  std::string init_error_;
};

}  // namespace mlxq
