#include "mlx_client.h"

#include "guard.h"

namespace mlxq {

struct MlxClient::Job {
  std::shared_ptr<MlxClient> client;  // keeps the client alive until the job is gone
  MlxThread::Work work;
  MlxThread::Settle settle;
  std::string error;
  Napi::Promise::Deferred deferred;
  explicit Job(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

std::shared_ptr<MlxClient> MlxClient::open(Napi::Env env) {
  std::shared_ptr<MlxClient> self(new MlxClient());
  self->completion_ = std::make_unique<Completion>(Completion::New(env, "mlx-qlora", 0, 1, self.get()));
  // Idle, the addon must not keep the process alive; submit() refs it while jobs are pending.
  self->completion_->Unref(env);
  MlxThread::shared().attach();
  return self;
}

bool MlxClient::closed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return closed_;
}

Napi::Promise MlxClient::submit(Napi::Env env, MlxThread::Work work) {
  auto job = std::make_unique<Job>(env);
  job->client = shared_from_this();
  job->work = std::move(work);
  Napi::Promise promise = job->deferred.Promise();
  // The task owns the job; a shared_ptr because std::function needs a copyable callable.
  auto owned = std::make_shared<std::unique_ptr<Job>>(std::move(job));
  Job* raw = owned->get();
  bool queued = MlxThread::shared().enqueue_job([owned] {
    std::unique_ptr<Job> job = std::move(*owned);
    if (job->client->closed()) return;  // its inputs are released here, on the MLX thread
    MlxThread& mlx = MlxThread::shared();
    if (!mlx.init_error().empty()) {
      job->error = mlx.init_error();
    } else {
      try {
        job->settle = job->work(mlx);
      } catch (const std::exception& e) {
        job->error = e.what();
        if (job->error.empty()) job->error = "MLX operation failed";
      } catch (...) {
        job->error = "MLX operation failed with a non-standard exception";
      }
    }
    job->work = nullptr;
    job->client->complete(std::move(job));
  });
  if (!queued) {
    raw->deferred.Reject(Napi::Error::New(env, "mlx-qlora: the MLX thread has stopped").Value());
    MlxThread::shared().post([owned] { owned->reset(); });
    return promise;
  }
  if (pending_++ == 0) completion_->Ref(env);
  return promise;
}

void MlxClient::complete(std::unique_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!closed_ && completion_->NonBlockingCall(job.get()) == napi_ok) {
      job.release();  // deliver() owns it now
      return;
    }
  }
  // Closed: the result (arrays in the settle) is released here, on the MLX thread.
}

void MlxClient::deliver(Napi::Env env, Napi::Function, MlxClient* self, Job* raw) {
  std::unique_ptr<Job> job(raw);
  if (env != nullptr) {
    without_exceptions("counting a settled job", [&] {
      if (--self->pending_ == 0) self->completion_->Unref(env);
    });
    settle(env, *job);
  }
  // The settle may hold the last reference to a result (if wrapping it threw, say), and an
  // environment going away leaves its result undelivered: either way its arrays go back to the
  // MLX thread rather than being freed on this one.
  without_exceptions("releasing a job's result", [&] {
    MlxThread::shared().post([settle = std::move(job->settle)]() mutable { settle = nullptr; });
  });
}

void MlxClient::settle(Napi::Env env, Job& job) noexcept {
  try {
    Napi::HandleScope scope(env);
    if (!job.error.empty()) {
      job.deferred.Reject(Napi::Error::New(env, job.error).Value());
      return;
    }
    try {
      job.deferred.Resolve(job.settle(env));
    } catch (const Napi::Error& e) {
      job.deferred.Reject(e.Value());
    } catch (...) {
      job.deferred.Reject(js_error_of_current_exception(env).Value());
    }
  } catch (...) {
    // A worker being terminated can no longer run JS, so settling throws; nothing can observe
    // this Promise any more, and an exception leaving a thread-safe function call aborts.
  }
}

void MlxClient::close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return;
    closed_ = true;
    completion_->Release();
  }
  MlxThread::shared().detach();
}

}  // namespace mlxq
