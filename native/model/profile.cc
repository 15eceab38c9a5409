#include "model/profile.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "errors.h"
#include "model/phase_probe.h"
#include "mx.h"

namespace mlxq::model {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

size_t active_bytes() {
  size_t v = 0;
  check(mlx_get_active_memory(&v), "mlx_get_active_memory");
  return v;
}

size_t peak_bytes() {
  size_t v = 0;
  check(mlx_get_peak_memory(&v), "mlx_get_peak_memory");
  return v;
}

void reset_peak() { check(mlx_reset_peak_memory(), "mlx_reset_peak_memory"); }

class StepProfiler : public PhaseProbe {
 public:
  StepProfiler() : last_(Clock::now()) {}

  void mark(const char* phase, std::initializer_list<mlx_array> arrays) override {
    std::vector<mlx_array> live;
    for (mlx_array a : arrays) {
      if (a.ctx != nullptr) live.push_back(a);
    }
    measure(phase, [&] { mx::eval(live); });
  }

  /** Charges `run` (which evaluates arrays) to `phase`, and the time since the last phase to the host. */
  template <typename F>
  void measure(const std::string& phase, F&& run) {
    const Clock::time_point t0 = Clock::now();
    cost("host: graph building").seconds += seconds_between(last_, t0);
    const size_t held = active_bytes();
    reset_peak();
    run();
    const Clock::time_point t1 = Clock::now();
    const size_t peak = peak_bytes();
    PhaseCost& c = cost(phase);
    c.calls++;
    c.seconds += seconds_between(t0, t1);
    c.retained_bytes += static_cast<double>(active_bytes()) - static_cast<double>(held);
    c.transient_bytes = std::max(c.transient_bytes, static_cast<double>(peak - std::min(peak, held)));
    peak_ = std::max(peak_, peak);
    last_ = Clock::now();
  }

  std::vector<PhaseCost> phases() const { return phases_; }
  size_t peak() const { return peak_; }

 private:
  PhaseCost& cost(const std::string& name) {
    auto it = std::find_if(phases_.begin(), phases_.end(), [&](const PhaseCost& c) { return c.name == name; });
    if (it != phases_.end()) return *it;
    phases_.push_back(PhaseCost{name});
    return phases_.back();
  }

  std::vector<PhaseCost> phases_;
  Clock::time_point last_;
  size_t peak_ = 0;
};

std::vector<mlx_array> outputs_of(const Model::LossAndGrads& r) {
  std::vector<mlx_array> all{r.loss.get(), r.count.get()};
  for (const auto& g : r.grads) all.push_back(g.get());
  return all;
}

}  // namespace

StepProfile profile_step(const Model& model, const Batch& batch, const mlx_array targets, const mlx_array mask) {
  StepProfile out;
  StepProfiler profiler;
  {
    Model::LossAndGrads r;
    {
      ScopedProbe probe(&profiler);
      r = model.loss_and_grads(batch, targets, mask, mlx_array{}, false);
    }
    profiler.measure("backward", [&] { mx::eval(outputs_of(r)); });
    out.loss = mx::item<float>(r.loss.get());
    out.tokens = mx::item<float>(r.count.get());
  }
  out.phases = profiler.phases();
  out.peak_bytes = static_cast<double>(profiler.peak());

  reset_peak();
  const Clock::time_point t0 = Clock::now();
  {
    Model::LossAndGrads r = model.loss_and_grads(batch, targets, mask, mlx_array{}, false);
    mx::eval(outputs_of(r));
  }
  out.whole_step_seconds = seconds_between(t0, Clock::now());
  out.whole_step_peak_bytes = static_cast<double>(peak_bytes());
  return out;
}

}  // namespace mlxq::model
