// The learning rate of each step: warmup, then a constant, cosine or step schedule.
#pragma once

#include <cstdint>
#include <string>

#include "aetrain/config.hpp"

namespace aetrain {

/// The learning rate of global step `step` (counted from 1), which belongs to epoch `epoch`
/// (counted from 0), in a run of `total_steps` steps, from the base rate `lr`:
///   step <= W (warmup):  lr * step / W
///   constant:            lr
///   cosine:              min_lr + (lr - min_lr) * (1 + cos(pi * (step - W) / (T - W))) / 2
///   step:                lr * gamma ^ floor(epoch / step_epochs)
/// with W the warmup steps and T the total steps (torch's LambdaLR with these formulas).
double scheduled_lr(const ScheduleConfig& s, double lr, int64_t step, int64_t epoch,
                    int64_t total_steps);

}  // namespace aetrain
