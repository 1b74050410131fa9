// What a training run tells its user and its metrics file: the start, each step (a line and
// an event on the --log-every cadence, else a progress line), each epoch, each checkpoint and
// the end.
#pragma once

#include <cstdint>
#include <string>

#include "aetrain/checkpoint.hpp"
#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/log.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/sources.hpp"
#include "aetrain/trainer.hpp"
#include "aetrain/training_data.hpp"

namespace aetrain {

/// The training data's memory and reads, for the end event.
struct DataUse {
  int64_t budget = 0;         // bytes per rank allowed
  double before_mib = 0;      // this process's memory before the data was read
  int64_t read_at_start = 0;  // this process's bytes read before the data was read
};

class Report {
 public:
  Report(const TrainConfig& config, const Comm& comm, Log& log);

  /// Whether global step `step` (counted from 1) gets a step line and metrics.
  bool logs_step(int64_t step) const {
    return config_.log_every > 0 && step % config_.log_every == 0;
  }
  void start(const Sources& sources, TrainingData& data, const Normalization& norm,
             int64_t parameters, const TrainState& state, bool resumed, const DataUse& use);
  /// Warns when the (normalized) training data lies outside what the output can produce.
  /// Collective.
  void data_range(const std::string& name, const TrainingData& data, const Normalization& norm);
  /// After step `steps` of epoch `epoch`, of the `steps_left` it had to go when it started.
  void step(const StepResult& r, const TrainState& state, int64_t epoch, int64_t steps,
            int64_t steps_left, double loss_so_far, Timers::Clock::time_point epoch_start);
  void epoch(int64_t epoch, double loss, int64_t rows, double seconds, double val_loss,
             bool validated, const TrainState& state);
  void checkpoint(const std::string& path, const TrainState& state);
  /// The end event, then the line of how the run ended.
  void end(EpochEnd how, double seconds, int64_t steps, double last_loss, const TrainState& state,
           const Timers& timers, const TrainingData& data, const DataUse& use);

 private:
  const TrainConfig& config_;
  const Comm& comm_;
  Log& log_;
  Timers::Clock::time_point last_progress_ = Timers::Clock::now();  // when last drawn
};

}  // namespace aetrain
