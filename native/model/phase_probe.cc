#include "model/phase_probe.h"

namespace mlxq::model {
namespace {
thread_local PhaseProbe* current = nullptr;
}  // namespace

PhaseProbe* active_probe() { return current; }

ScopedProbe::ScopedProbe(PhaseProbe* probe) : previous_(current) { current = probe; }
ScopedProbe::~ScopedProbe() { current = previous_; }

}  // namespace mlxq::model
