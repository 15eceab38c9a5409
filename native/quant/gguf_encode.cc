// ggufEncode(tensor, type, threads?): Promise<Buffer>
//
// Two stages. On the MLX thread the tensor is made float32 and row-contiguous and evaluated; only
// its data pointer leaves that thread. The encoding then runs on a libuv worker (spreading over
// `threads` threads of its own), so the MLX thread is free to compute the next tensor meanwhile,
// and the output is allocated once and handed to JS without a copy.
#include "gguf_encode.h"

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "../args.h"
#include "../errors.h"
#include "../tensor.h"
#include "block_types.h"
#include "parallel_encode.h"

namespace mlxq {
namespace {

using quant::BlockTypeInfo;

/** One encoding: its float32 source (owned by the MLX thread) and its output. */
struct EncodeJob {
  const BlockTypeInfo* type = nullptr;
  unsigned threads = 1;
  size_t count = 0;
  size_t cols = 0;
  size_t bytes = 0;
  ArrayRef source;  // keeps `values` alive
  const float* values = nullptr;
  std::unique_ptr<uint8_t[]> out;

  EncodeJob() = default;
  EncodeJob(const EncodeJob&) = delete;
  EncodeJob& operator=(const EncodeJob&) = delete;
  ~EncodeJob() { release_source(); }

  /** Any thread: the source is no longer read; its array is freed on the MLX thread. */
  void release_source() {
    values = nullptr;
    if (source) release_on_mlx([s = std::move(source)]() mutable { s.reset(); });
    source.reset();
  }
};

/** MLX thread: the tensor's values as an evaluated float32 row-major array. */
ArrayRef float32_rows(const ArrayRef& box, MlxThread& mlx) {
  Array f32;
  check(mlx_astype(f32.out(), box->array.get(), MLX_FLOAT32, mlx.stream()), "mlx_astype");
  Array rows;
  check(mlx_contiguous(rows.out(), f32.get(), false, mlx.stream()), "mlx_contiguous");
  return evaluated(std::move(rows));
}

class EncodeWorker : public Napi::AsyncWorker {
 public:
  EncodeWorker(Napi::Env env, std::shared_ptr<EncodeJob> job)
      : Napi::AsyncWorker(env, "mlx-qlora:ggufEncode"), deferred_(Napi::Promise::Deferred::New(env)), job_(std::move(job)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  std::string problem_text(const quant::EncodeProblem& p) const {
    const std::string row = "ggufEncode: row " + std::to_string(p.value_index / job_->cols);
    const std::string column = std::to_string(p.value_index % job_->cols);
    if (p.kind == quant::EncodeProblem::kNonFiniteInput) return row + ", column " + column + " is NaN or infinite";
    return row + ", block from column " + column + ": values too large for " + job_->type->name +
           " (a half-precision value or block scale overflows, which llama.cpp refuses)";
  }

  void Execute() override {
    try {
      job_->out.reset(new uint8_t[job_->bytes > 0 ? job_->bytes : 1]);
      const quant::EncodeProblem problem =
          quant::encode_parallel(*job_->type, job_->values, job_->count, job_->out.get(), job_->threads);
      if (problem.kind != quant::EncodeProblem::kNone) SetError(problem_text(problem));
    } catch (const std::bad_alloc&) {
      SetError("ggufEncode: out of memory for " + std::to_string(job_->bytes) + " bytes of " + job_->type->name);
    } catch (const std::exception& e) {
      SetError(std::string("ggufEncode: ") + e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    job_->release_source();
    try {
      auto* owner = new std::shared_ptr<EncodeJob>(job_);
      Napi::Buffer<uint8_t> buffer = Napi::Buffer<uint8_t>::NewOrCopy(
          env, job_->out.get(), job_->bytes,
          [](Napi::Env, uint8_t*, std::shared_ptr<EncodeJob>* owned) { delete owned; }, owner);
      job_.reset();
      deferred_.Resolve(buffer);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(env, std::string("ggufEncode: ") + e.what()).Value());
    }
  }

  void OnError(const Napi::Error& error) override {
    job_->release_source();
    job_->out.reset();
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<EncodeJob> job_;
};

std::string shape_text(const std::vector<int>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/** JS thread: the job for a tensor of this shape, or a TypeError/RangeError saying what is wrong. */
std::shared_ptr<EncodeJob> plan_job(Napi::Env env, const std::vector<int>& shape, const std::string& type_name,
                                    std::optional<int64_t> threads) {
  auto job = std::make_shared<EncodeJob>();
  try {
    job->type = &quant::block_type_by_name(type_name);
  } catch (const std::invalid_argument& e) {
    throw Napi::TypeError::New(env, std::string("ggufEncode: ") + e.what());
  }
  if (shape.empty() || shape.size() > 2) {
    throw Napi::RangeError::New(env, "ggufEncode: the tensor must be 1-D or 2-D (rows × row length), not " +
                                         shape_text(shape));
  }
  const size_t cols = static_cast<size_t>(shape.back());
  const size_t rows = shape.size() == 2 ? static_cast<size_t>(shape[0]) : 1;
  if (cols % job->type->block_elements != 0) {
    throw Napi::RangeError::New(env, std::string("ggufEncode: ") + job->type->name + " needs a row length (ne[0]) that is a multiple of " +
                                         std::to_string(job->type->block_elements) + ", but the tensor of shape " +
                                         shape_text(shape) + " has rows of " + std::to_string(cols));
  }
  if (threads && (*threads < 1 || *threads > 1024)) {
    throw Napi::RangeError::New(env, "ggufEncode: threads must be between 1 and 1024, not " + std::to_string(*threads));
  }
  job->threads = threads ? static_cast<unsigned>(*threads) : quant::default_encode_threads();
  job->count = rows * cols;
  job->cols = cols;
  job->bytes = quant::encoded_bytes(*job->type, rows, cols);
  return job;
}

Napi::Value EncodeOnMlx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArrayRef box = Tensor::From(info[0], "tensor");
  std::shared_ptr<EncodeJob> job =
      plan_job(env, box->shape, args::string_at(info, 1, "type"), args::optional_int_at(info, 2, "threads"));
  return run_on_mlx(env, [box, job](MlxThread& mlx) -> MlxThread::Settle {
    job->source = float32_rows(box, mlx);
    job->values = mlx_array_data_float32(job->source->array.get());
    if (job->values == nullptr && job->count > 0) throw std::runtime_error("ggufEncode: MLX gave no float32 data");
    return [job](Napi::Env env) -> Napi::Value {
      auto* worker = new EncodeWorker(env, job);  // deletes itself once settled
      Napi::Promise promise = worker->promise();
      worker->Queue();
      return promise;
    };
  });
}

// node-addon-api turns only Napi::Error into a JS exception; anything else would abort.
Napi::Value GgufEncode(const Napi::CallbackInfo& info) {
  try {
    return EncodeOnMlx(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("ggufEncode: ") + e.what());
  }
}

}  // namespace

void init_gguf_encode(Napi::Env env, Napi::Object exports) {
  exports.Set("ggufEncode", Napi::Function::New<GgufEncode>(env, "ggufEncode"));
}

}  // namespace mlxq
