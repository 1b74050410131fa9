#include "aetrain/trainer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "aetrain/fault.hpp"
#include "aetrain/io.hpp"
#include "aetrain/layers.hpp"
#include "aetrain/outputs.hpp"
#include "aetrain/runtime.hpp"
#include "aetrain/sampling.hpp"
#include "aetrain/schedule.hpp"
#include "gradient_sum.hpp"
#include "report.hpp"
#include "startup.hpp"
#include "validation.hpp"

namespace aetrain {
namespace {

using Clock = Timers::Clock;

// Where the kernels lie in the flat parameters: what weight decay applies to (not the biases).
std::vector<ParamRange> kernel_ranges(const Autoencoder<float>& model) {
  std::vector<ParamRange> out;
  for (const LayerShape& l : model.layers())
    out.push_back({size_t(l.kernel_offset), size_t(l.bias_offset)});
  return out;
}

}  // namespace

Trainer::Trainer(const TrainConfig& config, const Comm& comm, Log& log)
    : Trainer(start_run(config, comm, log), comm, log) {}

Trainer::Trainer(RunStart&& start, const Comm& comm, Log& log)
    : config_(start.config),
      comm_(comm),
      log_(log),
      sources_(std::move(start.sources)),
      norm_(start.norm),
      sample_block_(start.sample_block),
      batch_(sources_.cols, std::max<int64_t>(1, BatchPlan(1, config_.global_batch, comm.rank(),
                                                           comm.size(), sample_block_)
                                                     .classes())),
      model_(config_.model, batch_.cols(), config_.threads, config_.alpha),
      adam_(config_.adam, model_.params().size(), config_.weight_decay, kernel_ranges(model_)),
      noise_(config_.noise),
      gradient_sum_(config_.deterministic
                        ? exact_gradient_sum(model_, comm_, config_.threads, config_.global_batch,
                                             sample_block_, batch_.cols())
                        : plain_gradient_sum(model_, comm_)),
      data_use_(std::make_unique<DataUse>()),
      report_(std::make_unique<Report>(config_, comm_, log_)),
      state_(start.state),
      resumed_(start.resumed) {
  // The weights: --resume's with Adam's moments, --init-from's, or fresh.
  if (start.from) {
    const Checkpoint& c = *start.from;
    std::copy(c.params.begin(), c.params.end(), model_.params().begin());
    if (resumed_) {
      std::copy(c.m.begin(), c.m.end(), adam_.m().begin());
      std::copy(c.v.begin(), c.v.end(), adam_.v().begin());
      adam_.set_steps(c.header.adam_step);
      saved_step_ = state_.global_step;
    }
    start.from.reset();  // before the data takes its memory
  } else {
    model_.init_glorot(config_.seed);
  }
  if (noise_.kind != Noise::Kind::none) {
    noisy_.resize(batch_.rows(), batch_.cols());
    batch_rows_.resize(size_t(batch_.cols()));
  }
  data_use_->budget = start.data_budget;
  start_data(start.layout);
  if (start.val)
    val_ = std::make_unique<Validation>(*start.val, model_, sources_.cols,
                                        config_.deterministic ? sample_block_ : 0, comm_);
  check_recipe();
  remove_previous_run(config_, comm_);  // with --overwrite: the run is accepted
}

Trainer::~Trainer() = default;

void Trainer::start_data(const DataLayout& layout) {
  hdf5_library_version();  // HDF5 set up on every rank (rank 0 alone probed): not data memory
  data_use_->before_mib = memory_mib();
  data_use_->read_at_start = read_bytes();
  data_.emplace(sources_, layout, norm_, config_.global_batch, config_.seed, config_.shuffle,
                config_.epochs, comm_, sample_block_);
  if (state_.epoch >= config_.epochs) return;  // nothing to train: nothing to read
  if (state_.step_in_epoch >= data_->steps_in_epoch(state_.epoch))
    fail_replicated(
        ExitCode::checkpoint,
        config_.checkpoint + ": its data cursor (step " + std::to_string(state_.step_in_epoch) +
            " of epoch " + std::to_string(state_.epoch + 1) + ") does not fit " + sources_.name +
            "'s " + std::to_string(data_->steps_in_epoch(state_.epoch)) + " steps in that epoch");
  data_->seek(state_.epoch, state_.step_in_epoch);
  report_->data_range(sources_.name, *data_, norm_);
}

void Trainer::check_recipe() {
  for (int64_t e = 0; e < config_.epochs; ++e) total_steps_ += data_->steps_in_epoch(e);
  const ScheduleConfig& s = config_.schedule;
  if (s.warmup_steps >= total_steps_)
    fail_replicated(ExitCode::usage, "--warmup-steps " + std::to_string(s.warmup_steps) +
                                         " is not shorter than the run: its " +
                                         std::to_string(config_.epochs) + " epochs are " +
                                         std::to_string(total_steps_) + " steps of " +
                                         std::to_string(config_.global_batch) + " rows");
  if (s.kind == LrSchedule::cosine && s.min_lr > config_.adam.learning_rate)
    fail_replicated(ExitCode::usage, "--min-lr " + shortest(s.min_lr) + " is above --lr " +
                                         shortest(config_.adam.learning_rate) +
                                         ": the cosine schedule runs down from --lr to --min-lr");
  if (config_.early_stop > 0) {
    if (config_.val.files.empty())
      fail_replicated(ExitCode::usage,
                      "--early-stop watches val_loss: give validation data (--val-data or "
                      "--val-dataset)");
    if (config_.checkpoint.empty())
      fail_replicated(ExitCode::usage,
                      "--early-stop keeps the best model as CHECKPOINT.best: give --checkpoint");
  }
}

StepResult Trainer::step() {
  if (fault("replicated-error"))  // a bug main must catch: raised on one rank alone
    fail_replicated(ExitCode::other, "injected replicated error (AETRAIN_FAULT=replicated-error)");
  // Next batch. An error of this rank alone (a read of the next window that failed) must not
  // leave the others waiting in the step's collectives: this rank goes on without rows, and
  // the error rides in the step's totals, after which every rank raises it alike.
  Clock::time_point t = Clock::now();
  std::exception_ptr failure;
  int64_t n = 0;
  try {
    if (fault("throw")) throw std::runtime_error("injected failure (AETRAIN_FAULT=throw)");
    n = data_->gather(state_.epoch, state_.step_in_epoch, batch_.data(),
                      batch_rows_.empty() ? nullptr : batch_rows_.data(),
                      gradient_sum_->positions());
    if (data_->failure()) std::rethrow_exception(data_->failure());
  } catch (...) {
    failure = std::current_exception();
    n = 0;
  }
  // Noise: the model sees the corrupted rows and learns to give back the clean ones.
  const bool noisy = noise_.kind != Noise::Kind::none;
  const ConstMatrixMap<float> clean(batch_.data(), batch_.rows(), n);
  if (noisy)
    corrupt(noise_, config_.seed, state_.epoch, batch_rows_.data(), clean,
            MatrixMap<float>(noisy_.data(), noisy_.rows(), n));
  const ConstMatrixMap<float> input(noisy ? noisy_.data() : batch_.data(), batch_.rows(), n);
  timers_.lap(Phase::data, t);

  // Gradient sum, with the step's loss sum, rows, stop signals and failures.
  double totals[kTotals] = {0.0, double(n), stop_requested() ? 1.0 : 0.0, failure ? 1.0 : 0.0};
  gradient_sum_->compute(input, clean, timers_);
  t = Clock::now();
  gradient_sum_->sum_totals(totals);
  if (totals[3] > 0)  // before anything reads the sums: every rank raises the first failure
    comm_.agree([&] {
      if (failure) std::rethrow_exception(failure);
    });
  if (!gradient_sum_->sum_gradient(totals)) diverged("a gradient is NaN or infinite");
  t = timers_.lap(Phase::allreduce, t);

  // Schedule and clipping: the step's rate, and the averaged gradient's norm where clipping or
  // a step line needs it (every rank holds the same summed gradient, so computes the same).
  const double rows = totals[1];
  const double lr = scheduled_lr(config_.schedule, config_.adam.learning_rate,
                                 state_.global_step + 1, state_.epoch, total_steps_);
  const double grad_norm = config_.clip_norm > 0 || report_->logs_step(state_.global_step + 1)
                               ? l2_norm<float>(model_.grads()) / rows
                               : std::nan("");
  double grad_scale = 1.0 / rows;
  if (config_.clip_norm > 0) grad_scale *= std::min(1.0, config_.clip_norm / (grad_norm + 1e-6));
  const StepResult result{totals[0] / rows, int64_t(rows), totals[2] > 0, lr, grad_norm};
  if (!std::isfinite(result.loss))
    diverged(std::string("the loss is ") + (std::isnan(result.loss) ? "NaN" : "infinite"));

  // Adam.
  if (!adam_.step(model_.params(), model_.grads(), float(grad_scale), lr))
    diverged("a gradient or weight is NaN or infinite");
  if (fault("drift")) model_.params()[0] = std::nextafter(model_.params()[0], 1e30f);
  timers_.lap(Phase::update, t);

  // Advance.
  ++state_.global_step;
  if (++state_.step_in_epoch == data_->steps_in_epoch(state_.epoch)) {
    state_.step_in_epoch = 0;
    ++state_.epoch;
  }
  return result;
}

void Trainer::diverged(const std::string& what) const {
  fail_replicated(ExitCode::diverged, "training diverged: " + what + " at step " +
                                          std::to_string(state_.global_step + 1) + " (epoch " +
                                          std::to_string(state_.epoch + 1) +
                                          "); the last checkpoint is untouched; try a lower --lr");
}

double Trainer::validation_loss() { return val_ ? val_->loss(norm_) : std::nan(""); }

void Trainer::save(const std::string& path, int64_t keep) {
  const Clock::time_point t = Clock::now();
  CheckpointHeader h{config_.model, sources_.transform, norm_, config_.adam, adam_.steps(), state_};
  save_checkpoint(path, h, model_.params(), adam_.m(), adam_.v(), keep, comm_);
  saved_step_ = state_.global_step;
  timers_.lap(Phase::checkpoint, t);
  report_->checkpoint(path, state_);
}

void Trainer::check_replicas() {
  // A position-weighted sum of the weights' bit patterns: any flipped bit changes it.
  uint64_t sum = 0;
  const std::span<const float> p = model_.params();
  for (size_t i = 0; i < p.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &p[i], sizeof bits);
    sum += uint64_t(bits) * (2 * i + 1);
  }
  int64_t root = int64_t(sum);
  comm_.broadcast(std::span<int64_t>(&root, 1));
  comm_.agree([&] {
    if (int64_t(sum) != root)
      throw Error(ExitCode::other, "replicas differ at step " + std::to_string(state_.global_step) +
                                       ": this rank's weights are not rank 0's (--check-replicas)");
  });
}

RunEnd Trainer::run() {
  report_->start(sources_, *data_, norm_, int64_t(model_.params().size()), state_, resumed_,
                 *data_use_);
  if (config_.checkpoint.empty())
    log_.warn("no --checkpoint given: the trained model will not be saved");
  if (state_.epoch >= config_.epochs) {
    log_.line("already trained for " + std::to_string(state_.epoch) + " epochs (--epochs " +
              std::to_string(config_.epochs) + "): nothing to do");
    return RunEnd::finished;
  }
  if (config_.early_stop > 0 && state_.epochs_since_best >= config_.early_stop) {
    log_.line("this run stopped early after epoch " + std::to_string(state_.epoch) +
              " (the best was epoch " + std::to_string(state_.best_epoch) + ", in " +
              config_.checkpoint + ".best): nothing to do");
    return RunEnd::finished;
  }
  const Clock::time_point start = Clock::now();
  const int64_t first_step = state_.global_step;
  EpochEnd end = EpochEnd::next;
  while (state_.epoch < config_.epochs && end == EpochEnd::next) end = run_epoch();
  if (!config_.checkpoint.empty() && saved_step_ != state_.global_step)
    save(config_.checkpoint, config_.keep);
  report_->end(end, seconds_since(start), state_.global_step - first_step, last_loss_, state_,
               timers_, *data_, *data_use_);
  return end == EpochEnd::signal ? RunEnd::stopped : RunEnd::finished;
}

EpochEnd Trainer::run_epoch() {
  const int64_t epoch = state_.epoch;
  const Clock::time_point start = Clock::now();
  double loss_sum = 0;
  int64_t rows = 0, steps = 0;
  const int64_t steps_left = data_->steps_in_epoch(epoch) - state_.step_in_epoch;
  bool stop = false, stop_early = false;
  do {
    const StepResult r = step();
    loss_sum += r.loss * double(r.rows);
    rows += r.rows;
    ++steps;
    last_loss_ = r.loss;
    stop = r.stop;
    report_->step(r, state_, epoch, steps, steps_left, loss_sum / double(rows), start);
    if (config_.check_replicas > 0 && state_.global_step % config_.check_replicas == 0)
      check_replicas();
    // The epoch's end before a checkpoint of its last step, which then holds early stopping's
    // count of this epoch too.
    if (state_.step_in_epoch == 0)
      stop_early = after_epoch(epoch, loss_sum / double(rows), rows, seconds_since(start));
    save_on_cadence();
  } while (state_.step_in_epoch != 0 && !stop);
  return stop_early ? EpochEnd::early_stop : stop ? EpochEnd::signal : EpochEnd::next;
}

void Trainer::save_on_cadence() {
  if (!config_.checkpoint.empty() && config_.checkpoint_every > 0 &&
      state_.global_step % config_.checkpoint_every == 0) {
    save(config_.checkpoint, config_.keep);
    log_.line("checkpoint: " + config_.checkpoint + " (step " + std::to_string(state_.global_step) +
              ")");
  }
}

bool Trainer::after_epoch(int64_t epoch, double loss, int64_t rows, double seconds) {
  const double val = validation_loss();
  report_->epoch(epoch, loss, rows, seconds, val, val_ != nullptr, state_);
  if (config_.early_stop == 0) return false;
  // Keras' and Lightning's rule: better when below the best by more than min_delta.
  if (val < state_.best_val_loss - config_.min_delta) {
    state_.best_val_loss = val;
    state_.best_epoch = state_.epoch;
    state_.epochs_since_best = 0;
    save(config_.checkpoint + ".best", 1);
    return false;
  }
  return ++state_.epochs_since_best >= config_.early_stop;
}

}  // namespace aetrain
