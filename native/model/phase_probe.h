// Phase marks for the step profiler. MLX is lazy: a phase's cost only shows when its arrays are
// evaluated, so the profiler installs a probe that evaluates each phase's outputs as the forward
// pass builds them and times that. Without a probe a mark does nothing.
#pragma once

#include <initializer_list>

#include "handles.h"

namespace mlxq::model {

class PhaseProbe {
 public:
  virtual ~PhaseProbe() = default;
  /** Evaluates `arrays` (empty handles skipped) and charges the work to `phase`. */
  virtual void mark(const char* phase, std::initializer_list<mlx_array> arrays) = 0;
};

/** The probe of the calling (MLX) thread, or null. */
PhaseProbe* active_probe();

/** Installs a probe on the calling thread for its lifetime. */
class ScopedProbe {
 public:
  explicit ScopedProbe(PhaseProbe* probe);
  ~ScopedProbe();
  ScopedProbe(const ScopedProbe&) = delete;
  ScopedProbe& operator=(const ScopedProbe&) = delete;

 private:
  PhaseProbe* previous_;
};

inline void mark_phase(const char* phase, std::initializer_list<mlx_array> arrays) {
  if (PhaseProbe* p = active_probe()) p->mark(phase, arrays);
}

}  // namespace mlxq::model
