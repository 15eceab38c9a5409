// The one native thread that owns every MLX object in the process (design.md, native rule 2).
//
// Since MLX 0.31.2 default streams, GPU command encoders and the RNG sequence are per thread, and a
// lazy array can only be evaluated on the thread that made it; the trace stack and gradient
// bookkeeping of value_and_grad/vjp are process-wide and unsynchronized. So every MLX call in the
// process runs here, whichever Node environment (main thread or worker) asked for it. Each
// environment talks to it through its own MlxClient (mlx_client.h), which owns the thread-safe
// function that settles that environment's Promises.
//
// The thread starts when the first environment attaches and stops when the last one detaches. The
// object itself is never destroyed: finalizers may post releases after every environment is gone,
// and a static destructor joining a busy thread at exit() would block or std::terminate.
#pragma once

#include <napi.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "handles.h"

namespace mlxq {

class MlxThread {
 public:
  /** Runs on the JS thread; turns a finished job's C++ result into a JS value. */
  using Settle = std::function<Napi::Value(Napi::Env)>;
  /** Runs on the MLX thread; may throw (MlxError or std::exception) to reject the promise. */
  using Work = std::function<Settle(MlxThread&)>;

  /** The process-wide instance. */
  static MlxThread& shared();

  /** JS thread, at environment init: counts the environment in, starting the thread if needed. */
  void attach();
  /**
   * JS thread, at environment teardown: the last environment out stops and joins the thread. The
   * environment's queued jobs were dropped when its client closed, so the join waits at most for
   * the job already running; a thread left running into exit() dies in MLX's static destructors.
   */
  void detach();
  /**
   * Main JS thread, at process exit ('exit' event; process.exit() runs no cleanup hooks): drops
   * every queued job, waits for the running one, joins, and never starts the thread again.
   */
  void shutdown();
  /**
   * JS thread (an attached environment's): queue a job. False once the process is exiting (a
   * worker still running after the main thread's 'exit'); otherwise an attached environment
   * always has a running thread.
   */
  bool enqueue_job(std::function<void()> task);
  /**
   * Any thread: queue a task with no result (releasing arrays). With no thread running it runs
   * inline, under the lock that keeps a new thread from starting meanwhile.
   */
  void post(std::function<void()> task);
  /**
   * Any thread: an id of the running MLX thread (hash of its std::thread::id), 0 if none. Stable
   * while it runs; a thread started after a stop may reuse it, as the OS reuses thread ids.
   */
  uint64_t id() const;

  // MLX thread only.
  const mlx_stream& stream() const { return stream_.get(); }
  const mlx_stream& cpu_stream() const { return cpu_stream_.get(); }
  /**
   * Switches the stream later jobs use, for every environment: the device choice is per process,
   * as the thread is. It survives a stop and restart of the thread. "gpu" fails where MLX has no
   * GPU backend.
   */
  void use_device(mlx_device_type type);
  mlx_device_type device_type() const { return device_type_; }
  /** Set on a job that failed to start because the streams could not be made. */
  const std::string& init_error() const { return init_error_; }

 private:
  struct Task {
    std::function<void()> run;
    bool is_job;
  };
  MlxThread() = default;
  /** Stops and joins the running thread; `lock` is released during the join. */
  void stop_and_join(std::unique_lock<std::mutex>& lock);
  void loop();
  void init_streams();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable joined_;  // signalled when a join ends
  std::deque<Task> queue_;
  size_t environments_ = 0;
  bool running_ = false;    // a loop is alive (it may be stopping)
  bool stopping_ = false;   // the loop exits once the queue is empty
  bool joining_ = false;    // someone is joining the thread (without the lock)
  bool abandon_ = false;    // process exit: jobs are dropped unrun
  bool shut_down_ = false;  // process exit: no thread starts again
  std::thread thread_;
  uint64_t id_ = 0;

  // MLX thread only, except device_choice_ (under mutex_) which outlives a thread.
  Stream stream_;
  Stream cpu_stream_;
  mlx_device_type device_type_ = MLX_CPU;
  bool device_chosen_ = false;
  mlx_device_type device_choice_ = MLX_CPU;
  std::string init_error_;
};

}  // namespace mlxq
