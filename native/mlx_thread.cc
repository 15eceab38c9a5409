#include "mlx_thread.h"

#include "errors.h"
#include "guard.h"
#include "mx.h"

namespace mlxq {

MlxThread& MlxThread::shared() {
  // Leaked on purpose (see the header): no destructor may run at exit() while the thread is busy.
  static MlxThread* const instance = new MlxThread();
  return *instance;
}

void MlxThread::attach() {
  std::unique_lock<std::mutex> lock(mutex_);
  ++environments_;
  // A thread being stopped is not revived: its stopper is joining it.
  joined_.wait(lock, [this] { return !joining_; });
  if (running_ || shut_down_) return;
  stopping_ = false;
  running_ = true;
  init_error_.clear();
  thread_ = std::thread([this] { loop(); });
  id_ = static_cast<uint64_t>(std::hash<std::thread::id>{}(thread_.get_id()));
}

void MlxThread::detach() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (environments_ == 0 || --environments_ > 0) return;
  joined_.wait(lock, [this] { return !joining_; });
  if (environments_ > 0) return;  // a newcomer attached while we waited: keep its thread
  stop_and_join(lock);
}

void MlxThread::shutdown() {
  std::unique_lock<std::mutex> lock(mutex_);
  shut_down_ = true;
  abandon_ = true;
  stop_and_join(lock);
}

void MlxThread::stop_and_join(std::unique_lock<std::mutex>& lock) {
  joined_.wait(lock, [this] { return !joining_; });
  if (!thread_.joinable()) return;
  stopping_ = true;
  joining_ = true;
  wake_.notify_all();
  std::thread thread = std::move(thread_);
  lock.unlock();
  // Posts still queue meanwhile (running_ is set until the loop's last act) and are drained.
  thread.join();
  lock.lock();
  joining_ = false;
  joined_.notify_all();
}

bool MlxThread::enqueue_job(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!running_ || stopping_) return false;
  queue_.push_back(Task{std::move(task), true});
  wake_.notify_one();
  return true;
}

void MlxThread::post(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (running_) {
    queue_.push_back(Task{std::move(task), false});
    wake_.notify_one();
    return;
  }
  // No MLX thread, and none can start while we hold the lock: this thread is the only MLX user.
  task();
}

uint64_t MlxThread::id() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_ ? id_ : 0;
}

void MlxThread::init_streams() {
  Device device(mlx_device_new());
  check(mlx_get_default_device(device.out()), "mlx_get_default_device");
  check(mlx_device_get_type(&device_type_, device.get()), "mlx_device_get_type");
  check(mlx_get_default_stream(stream_.out(), device.get()), "mlx_get_default_stream");
  cpu_stream_ = Stream(mlx_default_cpu_stream_new());
  if (cpu_stream_.empty()) throw MlxError(take_last_error());
  mx::set_stream(stream_.get());
  bool chosen = false;
  mlx_device_type choice = MLX_CPU;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    chosen = device_chosen_;
    choice = device_choice_;
  }
  // A restarted thread keeps the device an earlier useDevice() picked for the process.
  if (chosen && choice != device_type_) use_device(choice);
}

void MlxThread::use_device(mlx_device_type type) {
  Device device(mlx_device_new_type(type, 0));
  bool available = false;
  check(mlx_device_is_available(&available, device.get()), "mlx_device_is_available");
  if (!available) throw MlxError(type == MLX_GPU ? "this MLX build has no GPU backend" : "no CPU device");
  Stream stream;
  check(mlx_get_default_stream(stream.out(), device.get()), "mlx_get_default_stream");
  stream_ = std::move(stream);
  device_type_ = type;
  mx::set_stream(stream_.get());
  std::lock_guard<std::mutex> lock(mutex_);
  device_chosen_ = true;
  device_choice_ = type;
}

void MlxThread::loop() {
  try {
    init_streams();
  } catch (const std::exception& e) {
    init_error_ = std::string("MLX could not start: ") + e.what();
  } catch (...) {
    init_error_ = "MLX could not start: an exception of unknown type";
  }
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) break;  // stopping with nothing left
    Task task = std::move(queue_.front());
    queue_.pop_front();
    const bool run = !(abandon_ && task.is_job);
    lock.unlock();
    // A job settles its own errors; an exception out of a release (or out of a job's hand-off)
    // would end this thread with std::terminate, taking the process with it.
    if (run) without_exceptions("a task on the MLX thread", [&] { task.run(); });
    // Whatever the task captured (arrays, models, a dropped job) is released here, on this thread.
    without_exceptions("a release on the MLX thread", [&] { task.run = nullptr; });
    lock.lock();
  }
  // Still under the lock, so a post() either got queued and ran above, or waits and runs inline
  // after running_ drops; it never meets these streams half-freed.
  stream_.reset();
  cpu_stream_.reset();
  running_ = false;
}

}  // namespace mlxq
