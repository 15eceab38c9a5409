// ggufEncode(tensor, type, threads?): Promise<Buffer>
// ggufTranscode(source, shape, type, { threads?, rowMap?, delta? }): Promise<Buffer>
//
// ggufEncode writes a dense MLX tensor as a GGUF type. ggufTranscode reads a tensor's bytes straight
// from a file ({ path, offset, type }: any GGUF type we decode, or safetensors F32/F16/BF16) or from
// a Tensor, optionally puts its rows in another order and adds an MLX delta (an adapter merge), and
// writes it as a GGUF type, decoding and encoding a few rows at a time on a libuv worker. Only the
// Tensor inputs visit the MLX thread (to become float32 rows); a file source with no delta never does.
#include "gguf_encode.h"

#include <optional>
#include <stdexcept>
#include <string>

#include "../args.h"
#include "../errors.h"
#include "../tensor.h"
#include "block_decode.h"
#include "transcode_job.h"

namespace mlxq {
namespace {

std::string shape_text(const std::vector<int>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

template <typename Lookup>
auto type_or_throw(Napi::Env env, const char* entry, Lookup lookup) -> decltype(lookup()) {
  try {
    return lookup();
  } catch (const std::invalid_argument& e) {
    throw Napi::TypeError::New(env, std::string(entry) + ": " + e.what());
  }
}

/** JS thread: fills the job's shape, target type and thread count, or throws a TypeError/RangeError saying what is wrong. */
void plan_job(Napi::Env env, TranscodeJob& job, const std::vector<int>& shape, const std::string& type_name, std::optional<int64_t> threads) {
  const std::string entry = job.entry;
  job.spec.to = &type_or_throw(env, job.entry, [&]() -> const quant::BlockTypeInfo& { return quant::block_type_by_name(type_name); });
  if (shape.empty() || shape.size() > 2) {
    throw Napi::RangeError::New(env, entry + ": the tensor must be 1-D or 2-D (rows × row length), not " + shape_text(shape));
  }
  const size_t cols = static_cast<size_t>(shape.back());
  const size_t rows = shape.size() == 2 ? static_cast<size_t>(shape[0]) : 1;
  for (size_t block : {job.spec.to->block_elements, job.spec.from->block_elements}) {
    if (cols % block == 0) continue;
    const char* name = block == job.spec.to->block_elements ? job.spec.to->name : job.spec.from->name;
    throw Napi::RangeError::New(env, entry + ": " + name + " needs a row length (ne[0]) that is a multiple of " + std::to_string(block) +
                                         ", but the tensor of shape " + shape_text(shape) + " has rows of " + std::to_string(cols));
  }
  if (threads && (*threads < 1 || *threads > 1024)) {
    throw Napi::RangeError::New(env, entry + ": threads must be between 1 and 1024, not " + std::to_string(*threads));
  }
  job.spec.threads = threads ? static_cast<unsigned>(*threads) : quant::default_encode_threads();
  job.spec.rows = rows;
  job.spec.cols = cols;
  job.bytes = quant::encoded_bytes(*job.spec.to, rows, cols);
}

/**
 * JS thread: runs the job, first making its Tensor inputs float32 rows on the MLX thread when it
 * has any (their data pointers then stay valid until the job releases them).
 */
Napi::Value run_job(Napi::Env env, std::shared_ptr<TranscodeJob> job, ArrayRef source, ArrayRef delta) {
  if (!source && !delta) return queue_transcode(env, std::move(job));
  return run_on_mlx(env, [job, source, delta](MlxThread& mlx) -> MlxThread::Settle {
    if (source) {
      job->source_array = float32_rows(source, mlx);
      job->spec.memory = reinterpret_cast<const uint8_t*>(mlx_array_data_float32(job->source_array->array.get()));
      if (job->spec.memory == nullptr) throw std::runtime_error(std::string(job->entry) + ": MLX gave no float32 data");
    }
    if (delta) {
      job->addend_array = float32_rows(delta, mlx);
      job->spec.addend = mlx_array_data_float32(job->addend_array->array.get());
      if (job->spec.addend == nullptr) throw std::runtime_error(std::string(job->entry) + ": MLX gave no float32 data for the delta");
    }
    return [job](Napi::Env env) -> Napi::Value { return queue_transcode(env, job); };
  });
}

Napi::Value Encode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArrayRef box = Tensor::From(info[0], "tensor");
  auto job = std::make_shared<TranscodeJob>();
  job->entry = "ggufEncode";
  job->spec.from = &quant::decode_type_by_name("F32");
  plan_job(env, *job, box->shape, args::string_at(info, 1, "type"), args::optional_int_at(info, 2, "threads"));
  return run_job(env, std::move(job), box, nullptr);
}

/** The file source { path, offset, type } of argument 0 into the job. */
void plan_file_source(Napi::Env env, TranscodeJob& job, Napi::Object source) {
  const Napi::Value path = source.Get("path");
  const Napi::Value offset = source.Get("offset");
  const Napi::Value type = source.Get("type");
  if (!path.IsString() || !offset.IsNumber() || !type.IsString()) {
    throw Napi::TypeError::New(env, "ggufTranscode: argument 'source' must be a Tensor or { path: string, offset: number, type: string }");
  }
  const double at = offset.As<Napi::Number>().DoubleValue();
  if (!(at >= 0) || at > 9007199254740991.0 || at != static_cast<double>(static_cast<uint64_t>(at))) {
    throw Napi::RangeError::New(env, "ggufTranscode: source offset must be a non-negative integer");
  }
  job.path = path.As<Napi::String>().Utf8Value();
  job.spec.offset = static_cast<uint64_t>(at);
  const std::string name = type.As<Napi::String>().Utf8Value();
  job.spec.from = &type_or_throw(env, "ggufTranscode", [&]() -> const quant::DecodeTypeInfo& { return quant::decode_type_by_name(name); });
}

/** options.rowMap: an Int32Array of `rows` source rows, each in [0, rows). */
void plan_row_map(Napi::Env env, TranscodeJob& job, Napi::Value value) {
  if (value.IsUndefined() || value.IsNull()) return;
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(env, "ggufTranscode: options.rowMap must be an Int32Array");
  }
  auto map = value.As<Napi::Int32Array>();
  if (map.ElementLength() != job.spec.rows) {
    throw Napi::RangeError::New(env, "ggufTranscode: options.rowMap has " + std::to_string(map.ElementLength()) + " rows, the tensor " +
                                         std::to_string(job.spec.rows));
  }
  job.row_map.assign(map.Data(), map.Data() + map.ElementLength());
  for (int32_t r : job.row_map) {
    if (r < 0 || static_cast<size_t>(r) >= job.spec.rows) throw Napi::RangeError::New(env, "ggufTranscode: options.rowMap names row " + std::to_string(r));
  }
  job.spec.row_map = job.row_map.data();
}

/**
 * options.rows ([first, count]) and options.into (a Uint8Array): only these rows are transcoded,
 * into the caller's buffer. Only for a file source without a delta (whose worker is made on this
 * thread and so can hold the buffer).
 */
void plan_rows_into(Napi::Env env, TranscodeJob& job, const Napi::Object& options) {
  const Napi::Value rows = options.Get("rows");
  const Napi::Value into = options.Get("into");
  if (rows.IsUndefined() && into.IsUndefined()) return;
  if (job.path.empty() || !options.Get("delta").IsUndefined()) {
    throw Napi::TypeError::New(env, "ggufTranscode: options.rows and options.into need a file source and no delta");
  }
  if (!rows.IsUndefined()) {
    const Napi::Array range = rows.IsArray() ? rows.As<Napi::Array>() : Napi::Array::New(env);
    const double first = range.Length() == 2 && range.Get(0u).IsNumber() ? range.Get(0u).As<Napi::Number>().DoubleValue() : -1;
    const double count = range.Length() == 2 && range.Get(1u).IsNumber() ? range.Get(1u).As<Napi::Number>().DoubleValue() : -1;
    if (!(first >= 0 && count >= 0 && first == static_cast<double>(static_cast<size_t>(first)) && count == static_cast<double>(static_cast<size_t>(count)) &&
          first + count <= static_cast<double>(job.spec.rows))) {
      throw Napi::RangeError::New(env, "ggufTranscode: options.rows must be [first, count] within the tensor's " + std::to_string(job.spec.rows) + " rows");
    }
    job.first_row = static_cast<size_t>(first);
    const size_t n = static_cast<size_t>(count);
    if (job.spec.row_map != nullptr) {
      job.row_map = std::vector<int32_t>(job.row_map.begin() + static_cast<std::ptrdiff_t>(job.first_row), job.row_map.begin() + static_cast<std::ptrdiff_t>(job.first_row + n));
      job.spec.row_map = job.row_map.data();  // source rows stay absolute: the offset is the tensor's
    } else {
      job.spec.offset += job.first_row * quant::source_row_bytes(job.spec);
    }
    job.spec.rows = n;
    job.bytes = quant::encoded_bytes(*job.spec.to, n, job.spec.cols);
  }
  if (!into.IsUndefined()) {
    if (!into.IsTypedArray() || into.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw Napi::TypeError::New(env, "ggufTranscode: options.into must be a Uint8Array");
    }
    auto buffer = into.As<Napi::Uint8Array>();
    if (buffer.ByteLength() < job.bytes) {
      throw Napi::RangeError::New(env, "ggufTranscode: options.into has " + std::to_string(buffer.ByteLength()) + " bytes, the rows need " + std::to_string(job.bytes));
    }
    job.into = buffer.Data();
  }
}

Napi::Value Transcode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto job = std::make_shared<TranscodeJob>();
  ArrayRef source;
  const Napi::Value first = info[0];
  if (first.IsObject() && first.As<Napi::Object>().Has("path")) {
    plan_file_source(env, *job, first.As<Napi::Object>());
  } else {
    source = Tensor::From(first, "source");
    job->spec.from = &quant::decode_type_by_name("F32");
  }
  const std::vector<int> shape = args::shape_at(info, 1, "shape");
  if (source && source->shape != shape) {
    throw Napi::RangeError::New(env, "ggufTranscode: the source tensor has shape " + shape_text(source->shape) + ", not " + shape_text(shape));
  }
  const Napi::Object options = info.Length() > 3 && info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
  const Napi::Value threads = options.Get("threads");
  if (!threads.IsUndefined() && !threads.IsNumber()) throw Napi::TypeError::New(env, "ggufTranscode: options.threads must be a number");
  const double t = threads.IsUndefined() ? 0 : threads.As<Napi::Number>().DoubleValue();
  if (!threads.IsUndefined() && t != static_cast<double>(static_cast<int64_t>(t))) throw Napi::RangeError::New(env, "ggufTranscode: threads must be an integer");
  plan_job(env, *job, shape, args::string_at(info, 2, "type"), threads.IsUndefined() ? std::nullopt : std::optional<int64_t>(static_cast<int64_t>(t)));
  plan_row_map(env, *job, options.Get("rowMap"));
  plan_rows_into(env, *job, options);
  if (job->into != nullptr) return queue_transcode(env, std::move(job), options.Get("into"));
  ArrayRef delta;
  if (!options.Get("delta").IsUndefined()) {
    delta = Tensor::From(options.Get("delta"), "options.delta");
    const std::vector<int> want = shape.size() == 2 ? shape : std::vector<int>{static_cast<int>(job->spec.rows), static_cast<int>(job->spec.cols)};
    if (delta->shape != shape && delta->shape != want) {
      throw Napi::RangeError::New(env, "ggufTranscode: the delta has shape " + shape_text(delta->shape) + ", the tensor " + shape_text(shape));
    }
  }
  return run_job(env, std::move(job), source, delta);
}

// node-addon-api turns only Napi::Error into a JS exception; anything else would abort.
template <Napi::Value (*Entry)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  try {
    return Entry(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("ggufTranscode: ") + e.what());
  }
}

}  // namespace

void init_gguf_encode(Napi::Env env, Napi::Object exports) {
  exports.Set("ggufEncode", Napi::Function::New<Guarded<Encode>>(env, "ggufEncode"));
  exports.Set("ggufTranscode", Napi::Function::New<Guarded<Transcode>>(env, "ggufTranscode"));
}

}  // namespace mlxq
