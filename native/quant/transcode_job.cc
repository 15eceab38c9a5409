#include "transcode_job.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "../errors.h"

namespace mlxq {
namespace {

/** Closes a file descriptor when the worker is done with it. */
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

class TranscodeWorker : public Napi::AsyncWorker {
 public:
  TranscodeWorker(Napi::Env env, std::shared_ptr<TranscodeJob> job, Napi::Value into)
      : Napi::AsyncWorker(env, "mlx-qlora:ggufTranscode"), deferred_(Napi::Promise::Deferred::New(env)), job_(std::move(job)) {
    // The caller's buffer stays alive (it cannot move or be detached while referenced) until this
    // worker, deleted on the JS thread, lets go of it.
    if (job_->into != nullptr) into_ = Napi::Persistent(into.As<Napi::Object>());
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      run();
    } catch (const std::bad_alloc&) {
      SetError(std::string(job_->entry) + ": out of memory for " + std::to_string(job_->bytes) + " bytes of " + job_->spec.to->name);
    } catch (const std::exception& e) {
      SetError(std::string(job_->entry) + ": " + e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    job_->release_arrays();
    if (job_->into != nullptr) {
      deferred_.Resolve(Napi::Number::New(env, static_cast<double>(job_->bytes)));
      return;
    }
    try {
      auto* owner = new std::shared_ptr<TranscodeJob>(job_);
      Napi::Buffer<uint8_t> buffer = Napi::Buffer<uint8_t>::NewOrCopy(
          env, job_->out.get(), job_->bytes, [](Napi::Env, uint8_t*, std::shared_ptr<TranscodeJob>* owned) { delete owned; }, owner);
      job_.reset();
      deferred_.Resolve(buffer);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(env, std::string("ggufTranscode: ") + e.what()).Value());
    }
  }

  void OnError(const Napi::Error& error) override {
    job_->release_arrays();
    job_->out.reset();
    deferred_.Reject(error.Value());
  }

 private:
  void run() {
    TranscodeJob& job = *job_;
    uint8_t* dst = job.into;
    if (dst == nullptr) {
      job.out.reset(new uint8_t[job.bytes > 0 ? job.bytes : 1]);
      dst = job.out.get();
    }
    if (job.path.empty()) {
      report(quant::transcode_parallel(job.spec, dst));
      return;
    }
    FileDescriptor fd(::open(job.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) throw std::runtime_error(job.path + ": " + std::strerror(errno));
    job.spec.fd = fd.get();
    const quant::TranscodeProblem problem = quant::transcode_parallel(job.spec, dst);
    job.spec.fd = -1;
    report(problem);
  }

  void report(const quant::TranscodeProblem& p) {
    if (p.kind == quant::TranscodeProblem::kNone) return;
    const TranscodeJob& job = *job_;
    const std::string entry = std::string(job.entry) + ": ";
    const std::string row = "row " + std::to_string(job.first_row + p.value_index / job.spec.cols);
    const std::string column = std::to_string(p.value_index % job.spec.cols);
    switch (p.kind) {
      case quant::TranscodeProblem::kNonFiniteInput: SetError(entry + row + ", column " + column + " is NaN or infinite"); return;
      case quant::TranscodeProblem::kOverflow:
        SetError(entry + row + ", block from column " + column + ": values too large for " + job.spec.to->name +
                 " (a half-precision value or block scale overflows, which llama.cpp refuses)");
        return;
      case quant::TranscodeProblem::kReadError: SetError(entry + job.path + ": reading " + row + ": " + std::strerror(p.error_number)); return;
      case quant::TranscodeProblem::kEndOfFile:
        SetError(entry + job.path + ": the file ends before " + row + " of the tensor (truncated, or changed since its header was read?)");
        return;
      case quant::TranscodeProblem::kOutOfMemory: SetError(entry + "out of memory for the conversion buffers"); return;
      case quant::TranscodeProblem::kNone: return;
    }
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<TranscodeJob> job_;
  Napi::ObjectReference into_;
};

}  // namespace

void TranscodeJob::release_arrays() {
  spec.memory = nullptr;
  spec.addend = nullptr;
  if (source_array) release_on_mlx([s = std::move(source_array)]() mutable { s.reset(); });
  if (addend_array) release_on_mlx([a = std::move(addend_array)]() mutable { a.reset(); });
  source_array.reset();
  addend_array.reset();
}

ArrayRef float32_rows(const ArrayRef& box, MlxThread& mlx) {
  Array f32;
  check(mlx_astype(f32.out(), box->array.get(), MLX_FLOAT32, mlx.stream()), "mlx_astype");
  Array rows;
  check(mlx_contiguous(rows.out(), f32.get(), false, mlx.stream()), "mlx_contiguous");
  return evaluated(std::move(rows));
}

Napi::Promise queue_transcode(Napi::Env env, std::shared_ptr<TranscodeJob> job, Napi::Value into) {
  auto* worker = new TranscodeWorker(env, std::move(job), into);  // deletes itself once settled
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace mlxq
