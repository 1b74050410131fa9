// The start of a training run, before its first step: the data probed, the outputs checked,
// the run's origin (--resume's checkpoint, --init-from's weights or a fresh start) checked
// against the options by the option table's rules, the statistics fitted and the data layout
// chosen. Every refusal happens here, before anything is written.
#pragma once

#include <optional>

#include "aetrain/checkpoint.hpp"
#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/log.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/sources.hpp"
#include "aetrain/training_data.hpp"

namespace aetrain {

/// What a run starts from.
struct RunStart {
  TrainConfig config;              // effective: the model's input width and the layout chosen
  Sources sources;                 // the training rows
  std::optional<Sources> val;      // the validation rows
  Normalization norm;              // applied to every row the model sees
  int64_t sample_block = 1;        // rows of a sample block (--deterministic), else 1
  std::optional<Checkpoint> from;  // the file of --resume (resumed) or --init-from
  bool resumed = false;            // the run continues `from`
  TrainState state;                // where the run starts
  DataLayout layout;
  int64_t data_budget = 0;  // bytes per rank for the training rows
};

/// Everything up to the first window's read; opens the metrics file (appending when resumed).
/// Collective; refusals are replicated errors. `config.threads` must be set.
RunStart start_run(const TrainConfig& config, const Comm& comm, Log& log);

}  // namespace aetrain
