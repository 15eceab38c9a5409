#include "model/model_wrap.h"

#include <cmath>
#include <map>
#include <memory>

#include "addon_state.h"
#include "args.h"
#include "dtype.h"
#include "errors.h"
#include "guard.h"
#include "model/batch_decode.h"
#include "model/batch_input.h"
#include "model/llama.h"
#include "model/optimizer.h"
#include "model/profile.h"
#include "model/sampler.h"
#include "model/weight_loader.h"
#include "mx.h"
#include "tensor.h"

namespace mlxq {
namespace {

using model::Model;

struct StepOptions {
  std::optional<int64_t> dropout_seed;
  bool checkpoint = false;
};

/** Option `key` of `obj`, or nullopt when absent (undefined); any other type is a TypeError. */
std::optional<double> number_option(const Napi::Object& obj, const char* key, const char* what) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return std::nullopt;
  if (!v.IsNumber()) throw Napi::TypeError::New(obj.Env(), std::string(what) + "." + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

std::optional<bool> bool_option(const Napi::Object& obj, const char* key, const char* what) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return std::nullopt;
  if (!v.IsBoolean()) throw Napi::TypeError::New(obj.Env(), std::string(what) + "." + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

/** The options object at argument i: undefined gives an empty object, anything but an object a TypeError. */
Napi::Object options_at(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || info[i].IsUndefined()) return Napi::Object::New(info.Env());
  if (!info[i].IsObject()) throw Napi::TypeError::New(info.Env(), std::string("argument '") + what + "' must be an object");
  return info[i].As<Napi::Object>();
}

bool is_integer(double d, double min, double max) { return std::isfinite(d) && std::floor(d) == d && d >= min && d <= max; }

/** `{ dropoutSeed?, checkpoint? }` at argument i. */
StepOptions step_options_at(const Napi::CallbackInfo& info, size_t i) {
  StepOptions o;
  Napi::Object obj = options_at(info, i, "options");
  if (auto seed = number_option(obj, "dropoutSeed", "options")) {
    if (!is_integer(*seed, 0, 9007199254740991.0)) throw Napi::RangeError::New(info.Env(), "options.dropoutSeed must be an integer >= 0");
    o.dropout_seed = static_cast<int64_t>(*seed);
  }
  o.checkpoint = bool_option(obj, "checkpoint", "options").value_or(false);
  return o;
}

/** MLX thread: the dropout key a step's options ask for, or an empty array. */
Array dropout_key(const StepOptions& o) { return o.dropout_seed ? mx::random_key(static_cast<uint64_t>(*o.dropout_seed)) : Array(); }
using ModelRef = std::shared_ptr<Model>;

/** MLX thread: see model::check_attention_sizes. */
void check_attention(MlxThread& mlx, const Model& m, int batch, int length) {
  if (mlx.device_type() == MLX_CPU) model::check_attention_sizes(m.config(), batch, length);
}

MlxThread::Settle settle_undefined() {
  return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
}

/** Shared by Model and Generator: a native object released on the MLX thread. */
template <typename T>
void release_on_mlx(Napi::Env, std::shared_ptr<T>& ref) {
  if (!ref) return;
  mlxq::release_on_mlx([r = std::move(ref)]() mutable { r.reset(); });
}

struct GeneratorState {
  ModelRef model;
  std::unique_ptr<model::BatchDecoder> decoder;
  bool started = false;
};

/** The generator options both generator() and batchGenerator() take. */
struct GeneratorOptions {
  model::SamplerOptions sampler;
  uint64_t seed = 0;
  bool use_lora = true;
};

GeneratorOptions generator_options_at(const Napi::CallbackInfo& info, size_t i) {
  Napi::Object o = options_at(info, i, "options");
  GeneratorOptions g;
  if (auto t = number_option(o, "temperature", "options")) {
    if (!(std::isfinite(*t) && *t >= 0)) throw Napi::RangeError::New(info.Env(), "options.temperature must be a finite number >= 0");
    g.sampler.temperature = static_cast<float>(*t);
  }
  if (auto p = number_option(o, "topP", "options")) {
    if (!(*p >= 0 && *p <= 1)) throw Napi::RangeError::New(info.Env(), "options.topP must be in [0, 1]");
    g.sampler.top_p = static_cast<float>(*p);
  }
  if (auto k = number_option(o, "topK", "options")) {
    if (!is_integer(*k, 0, 2147483647.0)) throw Napi::RangeError::New(info.Env(), "options.topK must be an integer >= 0");
    g.sampler.top_k = static_cast<int>(*k);
  }
  if (auto sd = number_option(o, "seed", "options")) {
    if (!is_integer(*sd, 0, 9007199254740991.0)) throw Napi::RangeError::New(info.Env(), "options.seed must be an integer >= 0");
    g.seed = static_cast<uint64_t>(*sd);
  }
  g.use_lora = bool_option(o, "lora", "options").value_or(true);
  return g;
}

/** A prompt's token ids, each checked against the vocabulary; `what` names it in errors. */
std::vector<int32_t> prompt_of(const Napi::Value& v, const model::ModelConfig& config, const std::string& what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(v.Env(), what + " must be an Int32Array");
  }
  auto a = v.As<Napi::Int32Array>();
  if (a.ElementLength() == 0) throw Napi::RangeError::New(v.Env(), what + " must hold at least one token");
  std::vector<int32_t> prompt(a.Data(), a.Data() + a.ElementLength());
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= config.vocab_size) {
      throw Napi::RangeError::New(v.Env(), what + "[" + std::to_string(i) + "] is " + std::to_string(prompt[i]) +
                                               ", outside the vocabulary [0, " + std::to_string(config.vocab_size) + ")");
    }
  }
  return prompt;
}

/** JS thread: a generator over `prompts`, its row keys made on the MLX thread. */
Napi::Value make_generator(Napi::Env env, const ModelRef& m, std::vector<std::vector<int32_t>> prompts,
                           const GeneratorOptions& g);

class GeneratorWrap : public Napi::ObjectWrap<GeneratorWrap> {
 public:
  template <Napi::Value (GeneratorWrap::*M)(const Napi::CallbackInfo&)>
  Napi::Value Guarded(const Napi::CallbackInfo& info) {
    return to_js_errors(info.Env(), [&] {
      // Before any member is touched: `this` may be another class's object.
      check_receiver(info, addon_state(info.Env()).generator_constructor, "Generator");
      return (this->*M)(info);
    });
  }
  static void Init(Napi::Env env) {
    Napi::Function ctor = DefineClass(env, "Generator",
                                      {InstanceMethod<&GeneratorWrap::Guarded<&GeneratorWrap::Next>>("next"),
                                       InstanceMethod<&GeneratorWrap::Guarded<&GeneratorWrap::Step>>("step"),
                                       InstanceMethod<&GeneratorWrap::Guarded<&GeneratorWrap::Logits>>("logits"),
                                       InstanceMethod<&GeneratorWrap::Guarded<&GeneratorWrap::Dispose>>("dispose")});
    addon_state(env).generator_constructor = Napi::Persistent(ctor);
  }
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<GeneratorState> state) {
    auto ext = Napi::External<std::shared_ptr<GeneratorState>>::New(
        env, new std::shared_ptr<GeneratorState>(std::move(state)),
        [](Napi::Env, std::shared_ptr<GeneratorState>* p) { delete p; });
    return addon_state(env).generator_constructor.New({ext});
  }
  explicit GeneratorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GeneratorWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "use model.generator()");
    state_ = std::move(*info[0].As<Napi::External<std::shared_ptr<GeneratorState>>>().Data());
  }
  void Finalize(Napi::Env env) override {
    without_exceptions("releasing a Generator", [&] { release_on_mlx(env, state_); });
  }

 private:
  // next(): Promise<number>, the next token id of a one-prompt generator
  Napi::Value Next(const Napi::CallbackInfo& info) {
    if (!state_) throw Napi::Error::New(info.Env(), "the generator is disposed");
    if (state_->decoder->prompt_count() != 1) throw Napi::Error::New(info.Env(), "next() is for one prompt: use step()");
    auto state = state_;
    return run_on_mlx(info.Env(), [state](MlxThread& mlx) -> MlxThread::Settle {
      int token = run_step(mlx, *state, {}).at(0);
      return [token](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, token); };
    });
  }
  // step(finished?: Int32Array): Promise<Int32Array>, after dropping the prompts in `finished`, the
  // next token of every prompt, -1 for prompts no longer running
  Napi::Value Step(const Napi::CallbackInfo& info) {
    if (!state_) throw Napi::Error::New(info.Env(), "the generator is disposed");
    std::vector<int> finished;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw Napi::TypeError::New(info.Env(), "argument 'finished' must be an Int32Array");
      }
      auto f = info[0].As<Napi::Int32Array>();
      for (size_t i = 0; i < f.ElementLength(); ++i) {
        if (f[i] < 0 || f[i] >= state_->decoder->prompt_count()) {
          throw Napi::RangeError::New(info.Env(), "finished[" + std::to_string(i) + "] is " + std::to_string(f[i]) + ", not a prompt index");
        }
        finished.push_back(f[i]);
      }
    }
    auto state = state_;
    return run_on_mlx(info.Env(), [state, finished](MlxThread& mlx) -> MlxThread::Settle {
      auto tokens = std::make_shared<std::vector<int32_t>>(run_step(mlx, *state, finished));
      return [tokens](Napi::Env env) -> Napi::Value {
        auto out = Napi::Int32Array::New(env, tokens->size());
        std::copy(tokens->begin(), tokens->end(), out.Data());
        return out;
      };
    });
  }
  // logits(): Promise<Tensor>, float32 [running prompts, vocab] the last step sampled from
  Napi::Value Logits(const Napi::CallbackInfo& info) {
    if (!state_) throw Napi::Error::New(info.Env(), "the generator is disposed");
    auto state = state_;
    return run_on_mlx(info.Env(), [state](MlxThread&) { return settle_tensor(evaluated(state->decoder->last_logits())); });
  }
  /** MLX thread: one step; the prefill (the first) is the pass with [length, length] score matrices. */
  static std::vector<int32_t> run_step(MlxThread& mlx, GeneratorState& state, const std::vector<int>& finished) {
    if (!state.started) check_attention(mlx, *state.model, state.decoder->prefill_rows_per_pass(), state.decoder->longest_prompt());
    state.started = true;
    return state.decoder->step(finished);
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    release_on_mlx(info.Env(), state_);
    return info.Env().Undefined();
  }

  std::shared_ptr<GeneratorState> state_;
};

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  template <Napi::Value (ModelWrap::*M)(const Napi::CallbackInfo&)>
  Napi::Value Guarded(const Napi::CallbackInfo& info) {
    return to_js_errors(info.Env(), [&] {
      // Before any member is touched: `this` may be another class's object.
      check_receiver(info, addon_state(info.Env()).model_constructor, "Model");
      return (this->*M)(info);
    });
  }
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(
        env, "Model",
        {InstanceMethod<&ModelWrap::Guarded<&ModelWrap::SetWeight>>("setWeight"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::SetQuantizedWeight>>("setQuantizedWeight"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::LoadSafetensors>>("loadSafetensors"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::Finalize_>>("finalize"), InstanceMethod<&ModelWrap::Guarded<&ModelWrap::Logits>>("logits"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::Loss>>("loss"), InstanceMethod<&ModelWrap::Guarded<&ModelWrap::LossAndGrads>>("lossAndGrads"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::ProfileStep>>("profileStep"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::SetLossChunkTokens>>("setLossChunkTokens"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::LoraParameters>>("loraParameters"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::SetLoraParameters>>("setLoraParameters"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::SetLoraEnabled>>("setLoraEnabled"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::DenseWeight>>("denseWeight"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::WeightNames>>("weightNames"), InstanceMethod<&ModelWrap::Guarded<&ModelWrap::Info>>("info"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::Generator>>("generator"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::BatchGenerator>>("batchGenerator"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::AccumulateGradients>>("accumulateGradients"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::ApplyOptimizer>>("applyOptimizer"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::ClearGradients>>("clearGradients"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::OptimizerState>>("optimizerState"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::SetOptimizerState>>("setOptimizerState"),
         InstanceMethod<&ModelWrap::Guarded<&ModelWrap::Dispose>>("dispose")});
    addon_state(env).model_constructor = Napi::Persistent(ctor);
    exports.Set("Model", ctor);
  }
  static Napi::Object Wrap(Napi::Env env, ModelRef model) {
    auto ext = Napi::External<ModelRef>::New(env, new ModelRef(std::move(model)),
                                             [](Napi::Env, ModelRef* p) { delete p; });
    return addon_state(env).model_constructor.New({ext});
  }
  explicit ModelWrap(const Napi::CallbackInfo& info) try : Napi::ObjectWrap<ModelWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "use createModel()");
    model_ = std::move(*info[0].As<Napi::External<ModelRef>>().Data());
    optimizer_ = std::make_shared<model::LoraOptimizer>();
    loader_ = std::make_shared<model::WeightLoader>();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw js_error_of_current_exception(info.Env());
  }
  void Finalize(Napi::Env env) override {
    without_exceptions("releasing a Model", [&] {
      release_on_mlx(env, model_);
      release_on_mlx(env, optimizer_);
      release_on_mlx(env, loader_);
    });
  }

 private:
  ModelRef live(const Napi::CallbackInfo& info) {
    if (!model_) throw Napi::Error::New(info.Env(), "the model is disposed");
    return model_;
  }

  // setWeight(name, tensor)
  Napi::Value SetWeight(const Napi::CallbackInfo& info) {
    auto m = live(info);
    std::string name = args::string_at(info, 0, "name");
    ArrayRef t = Tensor::From(info[1], "tensor");
    return run_on_mlx(info.Env(), [m, name, t](MlxThread&) {
      m->set_weight(name, mx::ref(t->array.get()));
      return settle_undefined();
    });
  }

  // setQuantizedWeight(name, wq, scales, biases, bits, groupSize)
  Napi::Value SetQuantizedWeight(const Napi::CallbackInfo& info) {
    auto m = live(info);
    std::string name = args::string_at(info, 0, "name");
    ArrayRef wq = Tensor::From(info[1], "wq");
    ArrayRef scales = Tensor::From(info[2], "scales");
    ArrayRef biases = Tensor::From(info[3], "biases");
    const int64_t bits = args::int_at(info, 4, "bits");
    const int64_t group = args::int_at(info, 5, "groupSize");
    // Checked here: a zero group size would divide by zero on the MLX thread.
    if (bits < 2 || bits > 8 || bits == 7) throw Napi::RangeError::New(info.Env(), "argument 'bits' must be 2, 3, 4, 5, 6 or 8");
    if (group != 32 && group != 64 && group != 128) throw Napi::RangeError::New(info.Env(), "argument 'groupSize' must be 32, 64 or 128");
    return run_on_mlx(info.Env(), [m, name, wq, scales, biases, bits, group](MlxThread&) {
      m->set_quantized(name, mx::ref(wq->array.get()), mx::ref(scales->array.get()), mx::ref(biases->array.get()),
                       static_cast<int>(bits), static_cast<int>(group));
      return settle_undefined();
    });
  }

  // loadSafetensors(path): Promise<string[]> of the tensor names taken (see WeightLoader).
  Napi::Value LoadSafetensors(const Napi::CallbackInfo& info) {
    auto m = live(info);
    auto loader = loader_;
    std::string path = args::string_at(info, 0, "path");
    return run_on_mlx(info.Env(), [m, loader, path](MlxThread& mlx) -> MlxThread::Settle {
      std::vector<std::string> taken = loader->load_file(*m, path, mlx.cpu_stream());
      return [taken](Napi::Env env) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, taken.size());
        for (size_t i = 0; i < taken.size(); ++i) out.Set(static_cast<uint32_t>(i), taken[i]);
        return out;
      };
    });
  }

  Napi::Value Finalize_(const Napi::CallbackInfo& info) {
    auto m = live(info);
    auto loader = loader_;
    return run_on_mlx(info.Env(), [m, loader](MlxThread&) {
      loader->check_complete();
      m->finalize();
      return settle_undefined();
    });
  }

  // logits(batch, { lora? }): Promise<Tensor> [B, L, V] float32
  Napi::Value Logits(const Napi::CallbackInfo& info) {
    auto m = live(info);
    auto input = std::make_shared<model::BatchInput>(model::BatchInput::parse(info[0], false, m->config().vocab_size));
    model::check_batch_sizes(m->config(), input->batch, input->length);
    bool use_lora = bool_option(options_at(info, 1, "options"), "lora", "options").value_or(true);
    return run_on_mlx(info.Env(), [m, input, use_lora](MlxThread& mlx) {
      check_attention(mlx, *m, input->batch, input->length);
      model::BatchArrays arrays(*input);
      std::vector<mlx_array> lora = m->lora_views();
      model::ForwardOptions options;
      options.lora = use_lora ? &lora : nullptr;
      return settle_tensor(evaluated(m->logits(arrays.view(), options)));
    });
  }

  // loss(batch): Promise<{ loss, tokens }>: summed cross-entropy and supervised token count
  Napi::Value Loss(const Napi::CallbackInfo& info) {
    auto m = live(info);
    auto input = std::make_shared<model::BatchInput>(model::BatchInput::parse(info[0], true, m->config().vocab_size));
    model::check_batch_sizes(m->config(), input->batch, input->length);
    return run_on_mlx(info.Env(), [m, input](MlxThread& mlx) -> MlxThread::Settle {
      check_attention(mlx, *m, input->batch, input->length);
      model::BatchArrays arrays(*input);
      std::vector<mlx_array> lora = m->lora_views();
      model::ForwardOptions options;
      options.lora = &lora;
      auto [loss, count] = m->loss(arrays.view(), arrays.targets.get(), arrays.mask.get(), options);
      mx::eval({loss.get(), count.get()});
      double l = mx::item<float>(loss.get());
      double c = mx::item<float>(count.get());
      return [l, c](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("loss", l);
        out.Set("tokens", c);
        return out;
      };
    });
  }

  // lossAndGrads(batch, { dropoutSeed?, checkpoint? }): Promise<{ loss, tokens, grads: Record<string, Tensor> }>
  Napi::Value LossAndGrads(const Napi::CallbackInfo& info) {
    auto m = live(info);
    auto input = std::make_shared<model::BatchInput>(model::BatchInput::parse(info[0], true, m->config().vocab_size));
    model::check_batch_sizes(m->config(), input->batch, input->length);
    StepOptions step = step_options_at(info, 1);
    return run_on_mlx(info.Env(), [m, input, step](MlxThread& mlx) -> MlxThread::Settle {
      check_attention(mlx, *m, input->batch, input->length);
      model::BatchArrays arrays(*input);
      Array key = dropout_key(step);
      auto result = m->loss_and_grads(arrays.view(), arrays.targets.get(), arrays.mask.get(),
                                      key.empty() ? mlx_array{} : key.get(), step.checkpoint);
      std::vector<mlx_array> all{result.loss.get(), result.count.get()};
      for (auto& g : result.grads) all.push_back(g.get());
      mx::eval(all);
      double l = mx::item<float>(result.loss.get());
      double c = mx::item<float>(result.count.get());
      std::vector<std::pair<std::string, ArrayRef>> grads;
      for (size_t i = 0; i < result.grads.size(); ++i) {
        grads.emplace_back(m->lora_names()[i], evaluated(std::move(result.grads[i])));
      }
      return [l, c, grads](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("loss", l);
        out.Set("tokens", c);
        Napi::Object g = Napi::Object::New(env);
        for (auto& [name, box] : grads) g.Set(name, Tensor::Wrap(env, box));
        out.Set("grads", g);
        return out;
      };
    });
  }

  // profileStep(batch): Promise<{ loss, tokens, phases, wholeStepSeconds, wholeStepPeakBytes, peakBytes }>
  Napi::Value ProfileStep(const Napi::CallbackInfo& info) {
    auto m = live(info);
    auto input = std::make_shared<model::BatchInput>(model::BatchInput::parse(info[0], true, m->config().vocab_size));
    model::check_batch_sizes(m->config(), input->batch, input->length);
    return run_on_mlx(info.Env(), [m, input](MlxThread& mlx) -> MlxThread::Settle {
      check_attention(mlx, *m, input->batch, input->length);
      model::BatchArrays arrays(*input);
      auto p = model::profile_step(*m, arrays.view(), arrays.targets.get(), arrays.mask.get());
      return [p](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("loss", p.loss);
        out.Set("tokens", p.tokens);
        out.Set("wholeStepSeconds", p.whole_step_seconds);
        out.Set("wholeStepPeakBytes", p.whole_step_peak_bytes);
        out.Set("peakBytes", p.peak_bytes);
        Napi::Array phases = Napi::Array::New(env, p.phases.size());
        for (size_t i = 0; i < p.phases.size(); ++i) {
          Napi::Object ph = Napi::Object::New(env);
          ph.Set("name", p.phases[i].name);
          ph.Set("calls", p.phases[i].calls);
          ph.Set("seconds", p.phases[i].seconds);
          ph.Set("retainedBytes", p.phases[i].retained_bytes);
          ph.Set("transientBytes", p.phases[i].transient_bytes);
          phases.Set(static_cast<uint32_t>(i), ph);
        }
        out.Set("phases", phases);
        return out;
      };
    });
  }

  // setLossChunkTokens(tokens): tokens per LM-head/cross-entropy chunk; 0: whole logits; -1: automatic
  Napi::Value SetLossChunkTokens(const Napi::CallbackInfo& info) {
    auto m = live(info);
    const int64_t tokens = args::int_at(info, 0, "tokens");
    if (tokens < -1 || tokens > 2147483647) throw Napi::RangeError::New(info.Env(), "argument 'tokens' must be an integer >= -1");
    return run_on_mlx(info.Env(), [m, tokens](MlxThread&) {
      m->set_loss_chunk_tokens(static_cast<int>(tokens));
      return settle_undefined();
    });
  }

  Napi::Value LoraParameters(const Napi::CallbackInfo& info) {
    auto m = live(info);
    return run_on_mlx(info.Env(), [m](MlxThread&) -> MlxThread::Settle {
      std::vector<std::pair<std::string, ArrayRef>> params;
      for (size_t i = 0; i < m->lora_params().size(); ++i) {
        params.emplace_back(m->lora_names()[i], evaluated(mx::ref(m->lora_params()[i].get())));
      }
      return [params](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        for (auto& [name, box] : params) out.Set(name, Tensor::Wrap(env, box));
        return out;
      };
    });
  }

  // setLoraParameters(record): replaces some or all; names and shapes must match.
  Napi::Value SetLoraParameters(const Napi::CallbackInfo& info) {
    auto m = live(info);
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "argument 'params' must be an object");
    auto obj = info[0].As<Napi::Object>();
    std::vector<std::pair<std::string, ArrayRef>> updates;
    Napi::Array keys = obj.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string k = keys.Get(i).ToString().Utf8Value();
      updates.emplace_back(k, Tensor::From(obj.Get(k), k.c_str()));
    }
    return run_on_mlx(info.Env(), [m, updates](MlxThread&) {
      for (const auto& [name, box] : updates) {
        const auto& names = m->lora_names();
        auto it = std::find(names.begin(), names.end(), name);
        if (it == names.end()) throw std::runtime_error("no LoRA parameter named '" + name + "'");
        Array& slot = m->lora_params()[it - names.begin()];
        if (mx::shape_of(slot.get()) != box->shape) {
          throw std::runtime_error("LoRA parameter '" + name + "' has a different shape");
        }
        slot = mx::astype(box->array.get(), m->lora_options().dtype);
        mx::eval({slot.get()});
      }
      return settle_undefined();
    });
  }

  Napi::Value SetLoraEnabled(const Napi::CallbackInfo& info) {
    auto m = live(info);
    bool enabled = args::bool_at(info, 0, "enabled");
    return run_on_mlx(info.Env(), [m, enabled](MlxThread&) {
      m->set_lora_enabled(enabled);
      return settle_undefined();
    });
  }

  // denseWeight(name, dtype?): Promise<Tensor>, dequantized, adapter merged (see Model::dense_named)
  Napi::Value DenseWeight(const Napi::CallbackInfo& info) {
    auto m = live(info);
    std::string name = args::string_at(info, 0, "name");
    mlx_dtype dtype = MLX_FLOAT32;
    if (auto d = args::optional_string_at(info, 1, "dtype")) {
      try {
        dtype = dtype_from_name(*d);
      } catch (const std::invalid_argument& e) {
        throw Napi::TypeError::New(info.Env(), std::string("argument 'dtype': ") + e.what());
      }
    }
    return run_on_mlx(info.Env(), [m, name, dtype](MlxThread&) { return settle_tensor(evaluated(m->dense_named(name, dtype))); });
  }

  // weightNames(): Promise<string[]>
  Napi::Value WeightNames(const Napi::CallbackInfo& info) {
    auto m = live(info);
    return run_on_mlx(info.Env(), [m](MlxThread&) -> MlxThread::Settle {
      auto names = m->weight_names();
      return [names](Napi::Env env) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, names.size());
        for (size_t i = 0; i < names.size(); ++i) out.Set(static_cast<uint32_t>(i), names[i]);
        return out;
      };
    });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    auto m = live(info);
    return run_on_mlx(info.Env(), [m](MlxThread&) -> MlxThread::Settle {
      size_t base = m->base_bytes(), lora = m->lora_bytes(), params = m->lora_parameter_count();
      auto names = m->lora_names();
      std::string compute = dtype_name(m->build().compute_dtype);
      std::map<std::string, int> quant;  // "4-bit g64" → count of linears
      for (int i = 0; i < m->config().num_layers; ++i) {
        for (const auto& l : m->layer(i).proj) {
          quant[l.bits ? std::to_string(l.bits) + "-bit g" + std::to_string(l.group_size) : "dense"]++;
        }
      }
      return [base, lora, params, names, quant, compute](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("computeDtype", compute);
        out.Set("baseBytes", static_cast<double>(base));
        out.Set("loraBytes", static_cast<double>(lora));
        out.Set("loraParameters", static_cast<double>(params));
        Napi::Array n = Napi::Array::New(env, names.size());
        for (size_t i = 0; i < names.size(); ++i) n.Set(static_cast<uint32_t>(i), names[i]);
        out.Set("loraNames", n);
        Napi::Object q = Napi::Object::New(env);
        for (auto& [k, v] : quant) q.Set(k, v);
        out.Set("linearStorage", q);
        return out;
      };
    });
  }

  // generator(prompt: Int32Array, { temperature, topP, topK, seed, lora }): Promise<Generator>
  Napi::Value Generator(const Napi::CallbackInfo& info) {
    auto m = live(info);
    if (info.Length() < 1) throw Napi::TypeError::New(info.Env(), "argument 'prompt' must be an Int32Array");
    std::vector<std::vector<int32_t>> prompts{prompt_of(info[0], m->config(), "argument 'prompt'")};
    return make_generator(info.Env(), m, std::move(prompts), generator_options_at(info, 1));
  }

  // batchGenerator(prompts: Int32Array[], { temperature, topP, topK, seed, lora }): Promise<Generator>
  Napi::Value BatchGenerator(const Napi::CallbackInfo& info) {
    auto m = live(info);
    if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "argument 'prompts' must be an array of Int32Array");
    auto list = info[0].As<Napi::Array>();
    if (list.Length() == 0) throw Napi::RangeError::New(info.Env(), "give at least one prompt");
    std::vector<std::vector<int32_t>> prompts;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      prompts.push_back(prompt_of(list.Get(i), m->config(), "prompts[" + std::to_string(i) + "]"));
    }
    return make_generator(info.Env(), m, std::move(prompts), generator_options_at(info, 1));
  }

  // accumulateGradients(batch, { dropoutSeed?, checkpoint? }): Promise<{ loss, tokens }>
  Napi::Value AccumulateGradients(const Napi::CallbackInfo& info) {
    auto m = live(info);
    auto opt = optimizer_;
    auto input = std::make_shared<model::BatchInput>(model::BatchInput::parse(info[0], true, m->config().vocab_size));
    model::check_batch_sizes(m->config(), input->batch, input->length);
    StepOptions step = step_options_at(info, 1);
    return run_on_mlx(info.Env(), [m, opt, input, step](MlxThread& mlx) -> MlxThread::Settle {
      check_attention(mlx, *m, input->batch, input->length);
      model::BatchArrays arrays(*input);
      Array key = dropout_key(step);
      auto [loss, tokens] = opt->accumulate(*m, arrays.view(), arrays.targets.get(), arrays.mask.get(),
                                            key.empty() ? mlx_array{} : key.get(), step.checkpoint);
      return [loss, tokens](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("loss", loss);
        out.Set("tokens", tokens);
        return out;
      };
    });
  }

  // applyOptimizer({ learningRate, beta1?, beta2?, eps?, weightDecay?, maxGradNorm? }):
  // Promise<{ gradNorm, lossSum, tokens, skipped, step }>
  Napi::Value ApplyOptimizer(const Napi::CallbackInfo& info) {
    auto m = live(info);
    auto opt = optimizer_;
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "argument 'options' must be an object");
    auto o = info[0].As<Napi::Object>();
    model::AdamWOptions a;
    // Ranges as AdamW defines them; a NaN or infinite setting would poison every LoRA weight.
    auto number = [&](const char* key, float& slot, bool required, double min, double max, const char* range) {
      std::optional<double> v = number_option(o, key, "options");
      if (!v) {
        if (required) throw Napi::TypeError::New(info.Env(), std::string("options.") + key + " must be a number");
        return;
      }
      if (!(*v >= min && *v <= max)) throw Napi::RangeError::New(info.Env(), std::string("options.") + key + " must be " + range);
      slot = static_cast<float>(*v);
    };
    const double big = 3.0e38;  // float's range
    number("learningRate", a.learning_rate, true, 0, big, "a finite number >= 0");
    number("beta1", a.beta1, false, 0, 0.9999999, "in [0, 1)");
    number("beta2", a.beta2, false, 0, 0.9999999, "in [0, 1)");
    number("eps", a.eps, false, 1e-38, big, "a finite number > 0");
    number("weightDecay", a.weight_decay, false, 0, big, "a finite number >= 0");
    number("maxGradNorm", a.max_grad_norm, false, 0, big, "a finite number >= 0 (0: no clipping)");
    return run_on_mlx(info.Env(), [m, opt, a](MlxThread&) -> MlxThread::Settle {
      auto r = opt->apply(*m, a);
      const double step = static_cast<double>(opt->step());
      return [r, step](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("gradNorm", r.grad_norm);
        out.Set("lossSum", r.loss_sum);
        out.Set("tokens", r.tokens);
        out.Set("skipped", r.skipped);
        out.Set("step", step);
        return out;
      };
    });
  }

  Napi::Value ClearGradients(const Napi::CallbackInfo& info) {
    auto opt = optimizer_;
    live(info);
    return run_on_mlx(info.Env(), [opt](MlxThread&) {
      opt->clear_gradients();
      return settle_undefined();
    });
  }

  // optimizerState(): Promise<{ step, tensors: Record<string, Tensor> }> (m.<name>, v.<name>)
  Napi::Value OptimizerState(const Napi::CallbackInfo& info) {
    auto m = live(info);
    auto opt = optimizer_;
    return run_on_mlx(info.Env(), [m, opt](MlxThread&) -> MlxThread::Settle {
      std::vector<std::pair<std::string, ArrayRef>> tensors;
      for (const auto& [name, arr] : opt->state(*m)) tensors.emplace_back(name, evaluated(mx::ref(arr)));
      const double step = static_cast<double>(opt->step());
      return [tensors, step](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("step", step);
        Napi::Object t = Napi::Object::New(env);
        for (auto& [name, box] : tensors) t.Set(name, Tensor::Wrap(env, box));
        out.Set("tensors", t);
        return out;
      };
    });
  }

  // setOptimizerState(tensors: Record<string, Tensor>, step: number): Promise<void>
  Napi::Value SetOptimizerState(const Napi::CallbackInfo& info) {
    auto m = live(info);
    auto opt = optimizer_;
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "argument 'tensors' must be an object");
    auto obj = info[0].As<Napi::Object>();
    std::vector<std::pair<std::string, ArrayRef>> entries;
    Napi::Array keys = obj.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string k = keys.Get(i).ToString().Utf8Value();
      entries.emplace_back(k, Tensor::From(obj.Get(k), k.c_str()));
    }
    int64_t step = args::int_at(info, 1, "step");
    return run_on_mlx(info.Env(), [m, opt, entries, step](MlxThread&) {
      std::vector<std::pair<std::string, Array>> state;
      for (const auto& [k, box] : entries) state.emplace_back(k, mx::ref(box->array.get()));
      opt->set_state(*m, state, step);
      return settle_undefined();
    });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    release_on_mlx(info.Env(), model_);
    release_on_mlx(info.Env(), optimizer_);
    release_on_mlx(info.Env(), loader_);
    return info.Env().Undefined();
  }

  ModelRef model_;
  std::shared_ptr<model::LoraOptimizer> optimizer_;
  // Parts of quantized triples waiting for a later shard; lives until dispose.
  std::shared_ptr<model::WeightLoader> loader_;
};

Napi::Value make_generator(Napi::Env env, const ModelRef& m, std::vector<std::vector<int32_t>> prompts,
                           const GeneratorOptions& g) {
  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  model::check_batch_sizes(m->config(), static_cast<int>(std::min<size_t>(prompts.size(), 2147483647)),
                           static_cast<int>(std::min<size_t>(longest, 2147483647)));
  auto state = std::make_shared<GeneratorState>();
  state->model = m;
  state->decoder = std::make_unique<model::BatchDecoder>(m, std::move(prompts), g.sampler, g.use_lora);
  const uint64_t seed = g.seed;
  return run_on_mlx(env, [state, seed](MlxThread&) -> MlxThread::Settle {
    state->decoder->seed(seed);
    return [state](Napi::Env e) -> Napi::Value { return GeneratorWrap::Wrap(e, state); };
  });
}

// createModel(config, build, lora): Promise<Model>
Napi::Value CreateModel(const Napi::CallbackInfo& info) {
  for (size_t i = 0; i < 3; ++i) {
    if (info.Length() <= i || !info[i].IsObject()) {
      throw Napi::TypeError::New(info.Env(), "createModel(config, build, lora) takes three objects");
    }
  }
  auto config = model::parse_model_config(info[0].As<Napi::Object>());
  auto build = model::parse_build_options(info[1].As<Napi::Object>());
  auto lora = model::parse_lora_options(info[2].As<Napi::Object>());
  model::check_model_sizes(config, lora);
  return run_on_mlx(info.Env(), [config, build, lora](MlxThread&) -> MlxThread::Settle {
    auto m = std::make_shared<Model>(config, build, lora);
    return [m](Napi::Env env) -> Napi::Value { return ModelWrap::Wrap(env, m); };
  });
}

}  // namespace

void init_model(Napi::Env env, Napi::Object exports) {
  GeneratorWrap::Init(env);
  ModelWrap::Init(env, exports);
  exports.Set("createModel", Napi::Function::New<guarded<CreateModel>>(env, "createModel"));
}

}  // namespace mlxq
