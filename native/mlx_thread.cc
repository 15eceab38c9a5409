#include "mlx_thread.h"

#include "errors.h"
#include "mx.h"

namespace mlxq {

struct MlxThread::Job {
  Work work;
  Settle settle;
  std::string error;
  Napi::Promise::Deferred deferred;
  explicit Job(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

std::shared_ptr<MlxThread> MlxThread::start(Napi::Env env) {
  std::shared_ptr<MlxThread> self(new MlxThread());
  self->completion_ = std::make_unique<Napi::TypedThreadSafeFunction<MlxThread, Job, &MlxThread::deliver>>(
      Napi::TypedThreadSafeFunction<MlxThread, Job, &MlxThread::deliver>::New(
          env, "mlx-qlora", 0, 1, self.get()));
  // Idle, the addon must not keep the process alive; submit() refs it while jobs are pending.
  self->completion_->Unref(env);
  self->thread_ = std::thread([raw = self.get()] { raw->loop(); });
  return self;
}

MlxThread::~MlxThread() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
}

void MlxThread::init_streams() {
  Device device(mlx_device_new());
  check(mlx_get_default_device(device.out()), "mlx_get_default_device");
  check(mlx_device_get_type(&device_type_, device.get()), "mlx_device_get_type");
  check(mlx_get_default_stream(stream_.out(), device.get()), "mlx_get_default_stream");
  cpu_stream_ = Stream(mlx_default_cpu_stream_new());
  if (cpu_stream_.empty()) throw MlxError(take_last_error());
  mx::set_stream(stream_.get());
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
}

void MlxThread::loop() {
  try {
    init_streams();
  } catch (const std::exception& e) {
    init_error_ = std::string("MLX could not start: ") + e.what();
  }
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping with nothing left
      task = std::move(queue_.front());
      queue_.pop_front();
      if (stopping_ && task.is_job) continue;
    }
    task.run();
  }
  // Release the streams on the thread that made them.
  stream_.reset();
  cpu_stream_.reset();
}

Napi::Promise MlxThread::submit(Napi::Env env, Work work) {
  auto* job = new Job(env);
  job->work = std::move(work);
  Napi::Promise promise = job->deferred.Promise();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) {
      job->deferred.Reject(Napi::Error::New(env, "mlx-qlora: the MLX thread has stopped").Value());
      delete job;
      return promise;
    }
    queue_.push_back(Task{[this, job] {
                            if (!init_error_.empty()) {
                              job->error = init_error_;
                            } else {
                              try {
                                job->settle = job->work(*this);
                              } catch (const std::exception& e) {
                                job->error = e.what();
                                if (job->error.empty()) job->error = "MLX operation failed";
                              } catch (...) {
                                job->error = "MLX operation failed with a non-standard exception";
                              }
                            }
                            // Inputs captured by the work are released here, on the MLX thread.
                            job->work = nullptr;
                            if (completion_->NonBlockingCall(job) != napi_ok) delete job;
                          },
                          true});
  }
  if (pending_++ == 0) completion_->Ref(env);
  wake_.notify_one();
  return promise;
}

void MlxThread::deliver(Napi::Env env, Napi::Function, MlxThread* self, Job* job) {
  std::unique_ptr<Job> owned(job);
  if (env == nullptr) return;  // the environment is going away
  if (--self->pending_ == 0) self->completion_->Unref(env);
  Napi::HandleScope scope(env);
  if (!job->error.empty()) {
    job->deferred.Reject(Napi::Error::New(env, job->error).Value());
    return;
  }
  try {
    job->deferred.Resolve(job->settle(env));
  } catch (const Napi::Error& e) {
    job->deferred.Reject(e.Value());
  } catch (const std::exception& e) {
    job->deferred.Reject(Napi::Error::New(env, e.what()).Value());
  }
}

void MlxThread::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stopped_) {
      queue_.push_back(Task{std::move(task), false});
      wake_.notify_one();
      return;
    }
  }
  task();  // the thread is gone: nothing else touches MLX from here on
}

void MlxThread::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::deque<Task> leftover;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopped_ = true;
    leftover.swap(queue_);
  }
  for (auto& task : leftover) {
    if (!task.is_job) task.run();
  }
  completion_->Release();
}

}  // namespace mlxq
