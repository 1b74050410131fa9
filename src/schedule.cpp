#include "aetrain/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace aetrain {

double scheduled_lr(const ScheduleConfig& s, double lr, int64_t step, int64_t epoch,
                    int64_t total_steps) {
  const int64_t w = s.warmup_steps;
  if (step <= w) return lr * double(step) / double(w);
  switch (s.kind) {
    case LrSchedule::constant: return lr;
    case LrSchedule::cosine: {
      const double progress =
          std::min(1.0, double(step - w) / double(std::max<int64_t>(1, total_steps - w)));
      return s.min_lr + (lr - s.min_lr) * (1.0 + std::cos(std::numbers::pi * progress)) / 2.0;
    }
    case LrSchedule::step: {
      const int64_t decays = epoch / std::max<int64_t>(1, s.step_epochs);  // whole periods
      return lr * std::pow(s.gamma, double(decays));
    }
  }
  return lr;
}

}  // namespace aetrain
