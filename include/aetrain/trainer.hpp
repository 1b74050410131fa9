// The training loop: the only module that sees the model, the optimizer, the data, the
// communicator and the checkpoints together.
#pragma once

#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "aetrain/checkpoint.hpp"
#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/data.hpp"
#include "aetrain/fixed_sum.hpp"
#include "aetrain/sources.hpp"
#include "aetrain/training_data.hpp"
#include "aetrain/log.hpp"
#include "aetrain/model.hpp"
#include "aetrain/noise.hpp"
#include "aetrain/optimizer.hpp"
#include "aetrain/sampling.hpp"

namespace aetrain {

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

/// A training run. Every public function is collective: all ranks call it together.
class Trainer {
 public:
  /// Checks the data, builds the model and starts it from --resume's checkpoint, --init-from's
  /// weights or a fresh initialization, chooses the data layout and reads the first window of
  /// rows. `config.threads` must be set.
  Trainer(const TrainConfig& config, const Comm& comm, Log& log);

  /// Trains until `epochs` epochs are complete, with checkpoints on the cadence and at the end,
  /// or until a stop signal, after which it writes a checkpoint and returns `stopped`.
  RunEnd run();
  /// One step of the global batch: gather, forward, backward, one allreduce, clipping, Adam.
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
  void start_from_checkpoints();
  // The options against the file of --resume (every option by its rule in the option table:
  // refused, with one line naming them all, when one that must match differs; a notice for
  // those that may change) or of --init-from (the model's options alone).
  void check_options_against(const Checkpoint& c, const std::string& path, bool resume);
  // The statistics pass over the training rows, before the first window is read.
  void fit_statistics();
  // The data layout (from the options, the checkpoint resumed and the memory budget), then the
  // rows of the step the run starts at.
  void start_data();
  // Warns when the (normalized) training data lies outside what the output can produce.
  void warn_if_out_of_reach();
  // The recipe's options against the run: the schedule against its length, early stopping
  // against its data and files.
  void check_recipe();
  // How an epoch ended: the run goes on, a stop signal came, or early stopping ends the run.
  enum class EpochEnd { next, signal, early_stop };
  // The phases of run(): one epoch's steps (then its validation, early stopping's count and
  // the checkpoints on the cadence), what follows each step (lines, metrics, replica checks),
  // the run's end.
  EpochEnd run_epoch();
  void after_step(const StepResult& r, int64_t epoch, int64_t steps, int64_t steps_left,
                  double loss_so_far, Timers::Clock::time_point epoch_start);
  // Early stopping's count after an epoch with `val_loss` (an improvement writes
  // CHECKPOINT.best); true when the run is to stop.
  bool stops_early(double val_loss);
  // --deterministic: the sample blocks' workers and sums; refuses more ranks than blocks.
  void start_deterministic();
  // This rank's blocks' forward and backward passes: their gradients into block_grads_, their
  // peaks into peaks_ and their loss sums into step_sums_.
  void block_gradients(ConstMatrixMap<float> input, ConstMatrixMap<float> target);
  // The blocks' gradients of all ranks summed into model_.grads(), exactly, as floats; stops
  // every rank alike when one of them is NaN or infinite.
  void sum_gradients_exactly();
  // Whether global step `step` (counted from 1) gets a step line and metrics.
  bool logs_step(int64_t step) const {
    return config_.log_every > 0 && step % config_.log_every == 0;
  }
  RunEnd finish(EpochEnd end, Timers::Clock::time_point run_start, int64_t first_step);
  std::string best_path() const { return config_.checkpoint + ".best"; }
  void log_start();
  void log_end(double seconds, int64_t steps, double last_loss);
  void log_epoch(int64_t epoch, double loss, int64_t rows, double seconds, double val_loss);

  TrainConfig config_;
  Comm comm_;
  Log& log_;
  Sources sources_;
  Normalization norm_;  // applied to every row the model sees
  int64_t sample_block_;  // rows of a sample block (--deterministic), else 1
  Matrix<float> batch_;  // (input_dim, classes of this rank)
  Autoencoder<float> model_;
  Adam<float> adam_;
  Noise noise_;                     // --noise
  Matrix<float> noisy_;             // batch_ corrupted (with noise)
  std::vector<int64_t> batch_rows_;  // each batch_ column's row of the data (with noise)
  // --deterministic: a worker per thread for the blocks' passes (reading model_'s weights),
  // each block's gradient, the peaks of the fixed-point grids (each thread's, then all ranks'),
  // the sum of a piece (with more than one rank) and this rank's share of it.
  std::deque<Autoencoder<float>> workers_;
  std::optional<FixedSum> exact_;
  AlignedVector<float> block_grads_;  // (parameters) a block, for this rank's blocks
  std::vector<const float*> block_terms_;  // where each of them starts
  std::vector<std::vector<uint32_t>> thread_peaks_;
  std::vector<uint32_t> peaks_;
  std::vector<int64_t> batch_positions_;  // each batch_ column's position in the global batch
  std::vector<int64_t> block_start_;      // the step's blocks: first columns, then the end
  static constexpr size_t kExactPiece = size_t(1) << 20;  // elements: 8 MiB of sums
  std::vector<int64_t> piece_sums_, share_;  // a piece's sums on this rank, and over all ranks
  std::vector<int> share_counts_;            // each rank's share of a piece
  int64_t data_budget_ = 0;  // bytes per rank for the training rows
  std::optional<TrainingData> data_;
  double memory_before_data_mib_ = 0;
  int64_t read_bytes_at_start_ = 0;  // this process's, when the data starts
  std::optional<SourceReader> val_;  // validation rows, read a batch at a time
  Matrix<float> val_batch_;          // (input_dim, max_batch)
  int64_t val_rows_total_ = 0;
  TrainState state_;
  bool resumed_ = false;
  int64_t saved_step_ = -1;  // global step of the last checkpoint written
  int64_t total_steps_ = 0;  // of the whole run, all epochs (the cosine schedule's T)
  double last_loss_ = std::numeric_limits<double>::quiet_NaN();  // the last step's, for the end event
  Timers::Clock::time_point last_progress_;  // when the progress line was last drawn
  // A step's loss sum, rows, stop flag and failure flag, then (--deterministic) each block's
  // loss sum, zeros for other ranks' blocks: one allreduce.
  static constexpr size_t kTotals = 4;
  std::vector<double> step_sums_ = std::vector<double>(kTotals);
  Timers timers_;
};

}  // namespace aetrain
