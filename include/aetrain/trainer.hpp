// The training loop: the only module that sees the model, the optimizer, the data, the
// communicator and the checkpoints together. It reads as a table of contents: the start-up
// (src/startup.cpp), the step's phases (the gradient sum in src/gradient_sum.cpp), the hooks
// after each step and epoch, and what the run reports (src/report.cpp).
#pragma once

#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "aetrain/checkpoint.hpp"
#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/log.hpp"
#include "aetrain/model.hpp"
#include "aetrain/noise.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/optimizer.hpp"
#include "aetrain/sources.hpp"
#include "aetrain/training_data.hpp"

namespace aetrain {

class GradientSum;
class Validation;
class Report;
struct DataUse;
struct RunStart;

/// What one step did, the same on every rank.
struct StepResult {
  double loss;       // mean loss over the step's rows, before the update
  int64_t rows;      // rows in the global batch of the step
  bool stop;         // a rank caught SIGUSR1 or SIGTERM: every rank stops after this step
  double lr;         // the learning rate of the step
  double grad_norm;  // the averaged gradient's L2 norm before clipping (NaN: not computed)
};

/// How a run ended.
enum class RunEnd { finished, stopped };
/// How an epoch ended: the run goes on, a stop signal came, or early stopping ends the run.
enum class EpochEnd { next, signal, early_stop };

/// A training run. Every public function is collective: all ranks call it together.
class Trainer {
 public:
  /// Checks the data, builds the model and starts it from --resume's checkpoint, --init-from's
  /// weights or a fresh initialization, chooses the data layout and reads the first window of
  /// rows. `config.threads` must be set.
  Trainer(const TrainConfig& config, const Comm& comm, Log& log);
  ~Trainer();

  /// Trains until `epochs` epochs are complete, with checkpoints on the cadence and at the end,
  /// or until a stop signal, after which it writes a checkpoint and returns `stopped`.
  RunEnd run();
  /// One step of the global batch: gather, noise, gradient sum, schedule and clipping, Adam.
  StepResult step();
  /// The mean loss over the validation rows (NaN without validation data).
  double validation_loss();
  /// Writes a checkpoint of the current state to `path`, keeping `keep` older ones beside it
  /// (rank 0 writes; all agree).
  void save(const std::string& path, int64_t keep = 1);
  /// Throws Error unless every rank holds rank 0's weights, bit for bit.
  void check_replicas();

  const TrainState& state() const { return state_; }
  const Autoencoder<float>& model() const { return model_; }
  const Adam<float>& adam() const { return adam_; }
  /// The steps of epoch `epoch` (windows end with short steps: epochs may differ).
  int64_t steps_in_epoch(int64_t epoch) { return data_->steps_in_epoch(epoch); }
  const DataLayout& layout() const { return data_->layout(); }
  /// The effective configuration, with the layout chosen (what checkpoints store).
  const TrainConfig& config() const { return config_; }
  const Normalization& normalization() const { return norm_; }
  /// True when the run continues a checkpoint (--resume and the checkpoint existed).
  bool resumed() const { return resumed_; }

 private:
  Trainer(RunStart&& start, const Comm& comm, Log& log);
  // The rows of the step the run starts at, once the model holds its weights.
  void start_data(const DataLayout& layout);
  // The recipe's options against the run: the schedule against its length, early stopping
  // against its data and files.
  void check_recipe();
  // One epoch's steps, each followed by its hooks: its report, the replica check on its
  // cadence, the epoch's end after its last step, the checkpoint on its cadence.
  EpochEnd run_epoch();
  // The epoch's end: validation, its report, early stopping's count (an improvement writes
  // CHECKPOINT.best); true when the run is to stop.
  bool after_epoch(int64_t epoch, double loss, int64_t rows, double seconds);
  void save_on_cadence();
  // Raises the divergence error of the coming step: `what` is NaN or infinite.
  [[noreturn]] void diverged(const std::string& what) const;

  TrainConfig config_;
  Comm comm_;
  Log& log_;
  Sources sources_;
  Normalization norm_;    // applied to every row the model sees
  int64_t sample_block_;  // rows of a sample block (--deterministic), else 1
  Matrix<float> batch_;   // (input_dim, classes of this rank)
  Autoencoder<float> model_;
  Adam<float> adam_;
  Noise noise_;                      // --noise
  Matrix<float> noisy_;              // batch_ corrupted (with noise)
  std::vector<int64_t> batch_rows_;  // each batch_ column's row of the data (with noise)
  std::unique_ptr<GradientSum> gradient_sum_;
  std::optional<TrainingData> data_;
  std::unique_ptr<DataUse> data_use_;
  std::unique_ptr<Validation> val_;
  std::unique_ptr<Report> report_;
  TrainState state_;
  bool resumed_ = false;
  int64_t saved_step_ = -1;  // global step of the last checkpoint written
  int64_t total_steps_ = 0;  // of the whole run, all epochs (the cosine schedule's T)
  double last_loss_ = std::numeric_limits<double>::quiet_NaN();  // the last step's
  Timers timers_;
};

}  // namespace aetrain
