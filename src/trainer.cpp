#include "aetrain/trainer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <omp.h>
#include <stdexcept>

#include "aetrain/cli.hpp"
#include "aetrain/fault.hpp"
#include "aetrain/layers.hpp"
#include "aetrain/outputs.hpp"
#include "aetrain/runtime.hpp"
#include "aetrain/schedule.hpp"

namespace aetrain {
namespace {

using Clock = Timers::Clock;

std::string shortest(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

double mib(int64_t bytes) { return double(bytes) / double(1 << 20); }

std::string format_mib(int64_t bytes) {
  char text[32];
  if (bytes >= int64_t(1) << 30)
    std::snprintf(text, sizeof text, "%.1f GiB", double(bytes) / double(1 << 30));
  else
    std::snprintf(text, sizeof text, "%.1f MiB", mib(bytes));
  return text;
}

// The configured architecture with its input width taken from the data.
ModelConfig model_for(const TrainConfig& config, const Sources& sources) {
  ModelConfig m = config.model;
  m.input_dim = sources.cols;
  try {
    validate(m);
  } catch (const std::invalid_argument& e) {
    fail_replicated(ExitCode::usage, e.what());
  }
  if (config.alpha > 0 && m.encoder_widths.back() != m.input_dim)
    fail_replicated(ExitCode::usage,
                    "--alpha " + shortest(config.alpha) +
                        " needs the code width to equal the input width: the code is " +
                        std::to_string(m.encoder_widths.back()) + " wide, " +
                        sources.name + " has " + std::to_string(m.input_dim) + " columns");
  return m;
}

// Where the kernels lie in the flat parameters: what weight decay applies to (not the biases).
std::vector<ParamRange> kernel_ranges(const Autoencoder<float>& model) {
  std::vector<ParamRange> out;
  for (const LayerShape& l : model.layers())
    out.push_back({size_t(l.kernel_offset), size_t(l.bias_offset)});
  return out;
}

// True when rank 0 (the rank that reads and writes checkpoints) sees `path`.
bool root_sees(const std::string& path, const Comm& comm) {
  int64_t seen = comm.rank() == 0 && !path.empty() && std::filesystem::exists(path) ? 1 : 0;
  comm.broadcast(std::span<int64_t>(&seen, 1));
  return seen == 1;
}

}  // namespace

Trainer::Trainer(const TrainConfig& config, const Comm& comm, Log& log)
    : config_(config),
      comm_(comm),
      log_(log),
      sources_(probe_sources(config.data, comm, accepted_by(config.normalize))),
      sample_block_(config.deterministic ? deterministic_block_rows(config.global_batch) : 1),
      batch_(sources_.cols,
             std::max<int64_t>(1, BatchPlan(1, config.global_batch, comm.rank(), comm.size(),
                                            sample_block_).classes())),
      model_(model_for(config, sources_), batch_.cols(), config.threads, config.alpha),
      adam_(config.adam, model_.params().size(), config.weight_decay, kernel_ranges(model_)),
      noise_(parse_noise(config.noise)) {
  config_.model = model_.config();
  if (noise_.kind != Noise::Kind::none) {
    noisy_.resize(batch_.rows(), batch_.cols());
    batch_rows_.resize(size_t(batch_.cols()));
  }
  if (config.deterministic) start_deterministic();
  state_.seed = config.seed;
  state_.global_batch = config.global_batch;
  state_.world_size = comm.size();
  state_.data_file = sources_.files.front().file;
  state_.dataset = config.data.dataset;
  state_.sources = sources_.files;
  if (config.global_batch < comm.size())
    log_.warn("--batch-size " + std::to_string(config.global_batch) + " is smaller than the " +
              std::to_string(comm.size()) + " ranks: some ranks will have no rows to train on");
  std::optional<Sources> val;
  if (!config.val.files.empty())
    val = probe_sources(config.val, comm, accepted_by(config.normalize));
  check_outputs(train_outputs(config, sources_, val ? &*val : nullptr), comm);
  start_from_checkpoints();
  // Only now, with the run accepted: a refused run must not truncate an earlier run's metrics.
  if (!config.metrics.empty()) log_.open_metrics(config.metrics, /*append=*/resumed_, comm);
  // Fresh statistics, unless --resume's or --init-from's file brought them.
  if (config.normalize != NormalizeKind::none && norm_.identity()) fit_statistics();
  start_data();

  if (val) {
    if (val->cols != sources_.cols)
      fail_replicated(ExitCode::data, val->name + ": has " + std::to_string(val->cols) +
                                          " columns, the training data " +
                                          std::to_string(sources_.cols));
    val_rows_total_ = val->rows;
    val_.emplace(*val);
    val_batch_.resize(sources_.cols, std::max<Index>(model_.max_batch(), sample_block_));
  }
  check_recipe();
  remove_previous_run(config_, comm_);  // with --overwrite: the run is accepted
}

void Trainer::start_data() {
  data_budget_ = config_.data_memory > 0 ? config_.data_memory : default_data_memory(comm_);
  DataLayout layout;
  comm_.agree([&] {  // every rank reaches the same verdict; agree keeps it one line
    layout = choose_layout(sources_, config_.data_block_rows, config_.window_rows, data_budget_,
                           config_.data_memory > 0 ? "--data-memory"
                                                   : "half this node's memory over its ranks",
                           config_.global_batch, comm_.size(), norm_, sample_block_);
  });
  config_.data_block_rows = state_.block_rows = layout.block_rows;
  config_.window_rows = state_.window_rows = layout.window_rows;
  state_.config = to_toml(config_);  // the effective configuration, layout included
  hdf5_library_version();  // HDF5 set up on every rank (rank 0 alone probed): not data memory
  memory_before_data_mib_ = memory_mib();
  read_bytes_at_start_ = read_bytes();
  data_.emplace(sources_, layout, norm_, config_.global_batch, config_.seed, config_.shuffle,
                config_.epochs, comm_, sample_block_);
  if (state_.epoch >= config_.epochs) return;  // nothing to train: nothing to read
  if (state_.step_in_epoch >= data_->steps_in_epoch(state_.epoch))
    fail_replicated(ExitCode::checkpoint,
                    config_.checkpoint + ": its data cursor (step " +
                        std::to_string(state_.step_in_epoch) + " of epoch " +
                        std::to_string(state_.epoch + 1) + ") does not fit " + sources_.name +
                        "'s " + std::to_string(data_->steps_in_epoch(state_.epoch)) +
                        " steps in that epoch");
  data_->seek(state_.epoch, state_.step_in_epoch);
  warn_if_out_of_reach();
}

void Trainer::check_recipe() {
  for (int64_t e = 0; e < config_.epochs; ++e) total_steps_ += data_->steps_in_epoch(e);
  const ScheduleConfig& s = config_.schedule;
  if (s.warmup_steps >= total_steps_)
    fail_replicated(ExitCode::usage,
                    "--warmup-steps " + std::to_string(s.warmup_steps) +
                        " is not shorter than the run: its " + std::to_string(config_.epochs) +
                        " epochs are " + std::to_string(total_steps_) + " steps of " +
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

void Trainer::fit_statistics() {
  const Clock::time_point start = Clock::now();
  const Moments moments =
      dataset_moments(sources_, Scatter::diagonal, rows_per_block(sources_.cols), comm_);
  int64_t constant = 0;
  norm_ = fit_normalization(config_.normalize, moments, &constant);
  if (constant > 0)
    log_.warn(sources_.name + ": " +
              constant_columns_warning(constant, sources_.cols, config_.normalize));
  char text[256];
  std::snprintf(text, sizeof text, "normalization: %s statistics of %lld rows x %lld columns in %.2f s",
                normalize_name(norm_.kind), (long long)moments.rows, (long long)sources_.cols,
                seconds_since(start));
  log_.line(text);
}

void Trainer::warn_if_out_of_reach() {
  // What the output activation can produce, against the values the model is to reproduce.
  const double inf = std::numeric_limits<double>::infinity();
  const Activation out = config_.model.output_activation;
  const double lo = out == Activation::tanh ? -1.0 : out == Activation::linear ? -inf : 0.0;
  const double hi = out == Activation::sigmoid || out == Activation::tanh ? 1.0 : inf;
  const auto [local_lo, local_hi] = data_->range();
  double range[2] = {local_lo, -local_hi};  // min and -max in one reduction
  comm_.allreduce_min(std::span<double>(range));
  if (range[0] >= lo && -range[1] <= hi) return;
  const std::string fix = norm_.kind == NormalizeKind::standard
                              ? "pass --output-activation linear (the default with --normalize "
                                "standard) or use --normalize minmax"
                              : "pass --normalize minmax (to [0, 1]), --normalize standard (with a "
                                "linear output), or --output-activation linear";
  log_.warn(sources_.name + ": the training data spans " +
            (data_->in_memory() ? "" : "(in its first window) ") + "[" + shortest(range[0]) +
            ", " + shortest(-range[1]) + "]" +
            (norm_.identity() ? "" : std::string(" after --normalize ") + normalize_name(norm_.kind)) +
            ", but a " + activation_name(out) + " output produces only [" + shortest(lo) + ", " +
            shortest(hi) + "], so the model cannot fit it: " + fix);
}

void Trainer::start_from_checkpoints() {
  const bool exists = root_sees(config_.checkpoint, comm_);
  if (exists && !config_.resume && !config_.overwrite)
    fail_replicated(ExitCode::usage, config_.checkpoint +
                                         ": a checkpoint is already there; pass --resume to "
                                         "continue it, or choose another --checkpoint path");
  if (config_.resume && config_.checkpoint.empty())
    fail_replicated(ExitCode::usage, "--resume needs --checkpoint PATH");

  if (config_.resume && exists) {
    const Checkpoint c = load_checkpoint(config_.checkpoint, comm_);
    const CheckpointHeader& h = c.header;
    if (!c.has_training_state)
      fail_replicated(ExitCode::checkpoint,
                      config_.checkpoint + ": holds a " +
                          (c.kind == ModelKind::pca ? std::string("PCA model")
                                                    : "model without training state (no " +
                                                          c.missing_state + ")") +
                          "; --resume needs a checkpoint written by aetrain train; use "
                          "--init-from to start from its weights");
    check_options_against(c, config_.checkpoint, /*resume=*/true);
    // The layout decides the batches: the checkpoint's (files before format 3: every row in
    // memory, one window).
    config_.window_rows = h.train.window_rows > 0 ? h.train.window_rows : sources_.rows;
    if (h.train.window_rows > 0) config_.data_block_rows = h.train.block_rows;
    std::copy(c.params.begin(), c.params.end(), model_.params().begin());
    norm_ = h.normalization;
    std::copy(c.m.begin(), c.m.end(), adam_.m().begin());
    std::copy(c.v.begin(), c.v.end(), adam_.v().begin());
    adam_.set_steps(h.adam_step);
    state_.epoch = h.train.epoch;
    state_.step_in_epoch = h.train.step_in_epoch;
    state_.global_step = h.train.global_step;
    state_.best_val_loss = h.train.best_val_loss;
    state_.best_epoch = h.train.best_epoch;
    state_.epochs_since_best = h.train.epochs_since_best;
    saved_step_ = state_.global_step;
    resumed_ = true;
    log_.line("resuming " + config_.checkpoint + " at epoch " + std::to_string(state_.epoch + 1) +
              ", step " + std::to_string(state_.global_step) + " (written by " +
              std::to_string(h.train.world_size) + " ranks, now " +
              std::to_string(comm_.size()) + ")");
    return;
  }
  if (config_.resume)
    log_.line("no checkpoint at " + config_.checkpoint + " yet: starting a new run");
  if (!config_.init_from.empty()) {
    const Checkpoint c = load_checkpoint(config_.init_from, comm_);
    check_options_against(c, config_.init_from, /*resume=*/false);
    std::copy(c.params.begin(), c.params.end(), model_.params().begin());
    norm_ = c.header.normalization;
    log_.line("starting from the weights of " + config_.init_from +
              (norm_.identity() ? "" : " and its normalization statistics"));
    return;
  }
  model_.init_glorot(config_.seed);
}

void Trainer::check_options_against(const Checkpoint& c, const std::string& path, bool resume) {
  const CheckpointHeader& h = c.header;
  // The file's values: its stored configuration, then what its own groups hold (the model, its
  // statistics, Adam's hyperparameters, the batch, the seed), which wins.
  TrainConfig stored;
  if (resume) {
    try {
      stored = train_config_from_toml(h.train.config);
    } catch (const std::invalid_argument& e) {
      fail_replicated(ExitCode::checkpoint,
                      path + ": its stored configuration cannot be read: " + e.what());
    }
    stored.adam = h.adam;
    stored.global_batch = h.train.global_batch;
    stored.seed = h.train.seed;
  }
  stored.model = h.model;
  stored.normalize = h.normalization.kind;
  TrainConfig now = config_;
  // The data as the files it names and their rows (files before format 3 recorded one file and
  // not its rows): the same spelling of --data may name other files, another spelling the same.
  const bool rows_known = h.train.sources.size() != 1 || h.train.sources.front().rows >= 0;
  const auto identity = [&](const std::vector<SourceEntry>& files) {
    std::vector<std::string> out;
    for (const SourceEntry& e : files)
      out.push_back(e.file + (rows_known ? " (" + std::to_string(e.rows) + " rows)" : ""));
    return out;
  };
  if (resume) {
    stored.data.files = identity(h.train.sources);
    stored.data.dataset = h.train.sources.front().dataset;
    now.data.files = identity(sources_.files);
  }
  std::vector<OptionChange> changes = changed_options(stored, now);
  const auto differs = [&](const std::string& option) {
    return std::any_of(changes.begin(), changes.end(),
                       [&](const OptionChange& o) { return o.option == option; });
  };
  // Report causes, not their consequences: a defaulted activation follows another option.
  std::erase_if(changes, [&](const OptionChange& o) {
    return (!resume && o.rule != ResumeRule::model) ||
           (o.option == "--output-activation" && config_.default_output &&
            differs("--normalize")) ||
           (o.option == "--code-activation" && config_.default_code && differs("--activation"));
  });
  std::string was, asks, pass, notices;
  for (const OptionChange& o : changes) {
    if (o.rule == ResumeRule::notice) {
      notices += (notices.empty() ? "" : ", ") + o.option + " " + o.now + " (was " + o.stored + ")";
      continue;
    }
    was += (was.empty() ? "" : ", ") + o.option + " " + o.stored;
    asks += (asks.empty() ? "" : ", ") + o.option + " " + o.now;
    pass += " " + o.option + " " + o.stored;
  }
  if (!was.empty()) {
    const bool data = differs("--data") || differs("--dataset");
    fail_replicated(
        ExitCode::usage,
        path + ": " + (resume ? "was trained with " : "holds a model trained with ") + was +
            "; this run asks for " + asks + "; " +
            (data ? "resuming needs the same files and rows (its data cursor means nothing "
                    "otherwise); use --init-from to start a new run from its weights"
                  : (resume ? "resuming" : "--init-from") +
                        std::string(" needs the same values: pass") + pass +
                        (differs("--normalize") && stored.normalize != NormalizeKind::none
                             ? " (the file's statistics are kept, not fitted "
                                                  "again)"
                             : " (`aetrain inspect " + path + "` shows what it stores)")));
  }
  if (h.model.input_dim != config_.model.input_dim)
    fail_replicated(ExitCode::checkpoint,
                    path + ": holds a model for rows of " + std::to_string(h.model.input_dim) +
                        " columns (" + describe(h.model) + "); " + sources_.name + " has " +
                        std::to_string(config_.model.input_dim));
  if (!notices.empty()) log_.line("resuming " + path + " with " + notices);
}

StepResult Trainer::step() {
  if (fault("replicated-error"))  // a bug main must catch: raised on one rank alone
    fail_replicated(ExitCode::other, "injected replicated error (AETRAIN_FAULT=replicated-error)");
  Clock::time_point t = Clock::now();
  const auto or_null = [](std::vector<int64_t>& v) { return v.empty() ? nullptr : v.data(); };
  // An error of this rank alone (a read of the next window that failed) must not leave the
  // others waiting in the step's collectives: this rank goes on without rows, and the error
  // rides in the step's totals, after which every rank raises it alike.
  std::exception_ptr failure;
  int64_t n = 0;
  try {
    if (fault("throw")) throw std::runtime_error("injected failure (AETRAIN_FAULT=throw)");
    n = data_->gather(state_.epoch, state_.step_in_epoch, batch_.data(), or_null(batch_rows_),
                      or_null(batch_positions_));
    if (data_->failure()) std::rethrow_exception(data_->failure());
  } catch (...) {
    failure = std::current_exception();
    n = 0;
  }
  // Denoising: the model sees the corrupted rows and learns to give back the clean ones.
  const bool noisy = noise_.kind != Noise::Kind::none;
  const ConstMatrixMap<float> clean(batch_.data(), batch_.rows(), n);
  if (noisy)
    corrupt(noise_, config_.seed, state_.epoch, batch_rows_.data(), clean,
            MatrixMap<float>(noisy_.data(), noisy_.rows(), n));
  const ConstMatrixMap<float> input(noisy ? noisy_.data() : batch_.data(), batch_.rows(), n);
  t = timers_.lap(Phase::data, t);

  // The gradient sum, then the step's loss sum, row count, the ranks that caught a stop signal
  // and those that failed, summed in double (a small second reduction, measured at under 1 us
  // beside the gradients' one): every rank decides alike. With --deterministic the block
  // losses follow (one rank's value, zeros elsewhere: exact).
  const std::span<double> totals(step_sums_.data(), kTotals);
  std::fill(step_sums_.begin(), step_sums_.end(), 0.0);
  totals[1] = double(n);
  totals[2] = stop_requested() ? 1.0 : 0.0;
  totals[3] = failure ? 1.0 : 0.0;
  if (config_.deterministic) {
    block_gradients(input, clean);
    t = timers_.lap(Phase::forward, t);  // each block's forward and backward
  } else {
    totals[0] = model_.forward(input, clean);
    t = timers_.lap(Phase::forward, t);
    model_.backward();
    if (fault("nan-gradient")) model_.grads()[0] = std::nanf("");
    t = timers_.lap(Phase::backward, t);
    comm_.allreduce_sum(model_.grads());
  }
  comm_.allreduce_sum(std::span<double>(step_sums_));
  if (totals[3] > 0)  // before anything reads the sums: every rank raises the first failure
    comm_.agree([&] {
      if (failure) std::rethrow_exception(failure);
    });
  if (config_.deterministic) {
    sum_gradients_exactly();
    for (size_t b = totals.size(); b < step_sums_.size(); ++b)
      totals[0] += step_sums_[b];  // in block order, on every rank alike
  }
  t = timers_.lap(Phase::allreduce, t);

  // The schedule's rate, and the averaged gradient's norm where clipping or a step line needs
  // it: every rank holds the same summed gradient, so every rank computes the same.
  const double lr = scheduled_lr(config_.schedule, config_.adam.learning_rate,
                                 state_.global_step + 1, state_.epoch, total_steps_);
  const double grad_norm = config_.clip_norm > 0 || logs_step(state_.global_step + 1)
                               ? l2_norm<float>(model_.grads()) / totals[1]
                               : std::nan("");
  double grad_scale = 1.0 / totals[1];
  if (config_.clip_norm > 0) grad_scale *= std::min(1.0, config_.clip_norm / (grad_norm + 1e-6));
  const StepResult result{totals[0] / totals[1], int64_t(totals[1]), totals[2] > 0, lr, grad_norm};
  if (!std::isfinite(result.loss))
    fail_replicated(ExitCode::diverged,
                    "training diverged: the loss is " +
                        std::string(std::isnan(result.loss) ? "NaN" : "infinite") + " at step " +
                        std::to_string(state_.global_step + 1) + " (epoch " +
                        std::to_string(state_.epoch + 1) +
                        "); the last checkpoint is untouched; try a lower --lr");
  if (!adam_.step(model_.params(), model_.grads(), float(grad_scale), lr))
    fail_replicated(ExitCode::diverged,
                    "training diverged: a gradient or weight is NaN or infinite at step " +
                        std::to_string(state_.global_step + 1) + " (epoch " +
                        std::to_string(state_.epoch + 1) +
                        "); the last checkpoint is untouched; try a lower --lr");
  if (fault("drift")) model_.params()[0] = std::nextafter(model_.params()[0], 1e30f);
  timers_.lap(Phase::update, t);

  ++state_.global_step;
  if (++state_.step_in_epoch == data_->steps_in_epoch(state_.epoch)) {
    state_.step_in_epoch = 0;
    ++state_.epoch;
  }
  return result;
}

void Trainer::start_deterministic() {
  const int64_t blocks = deterministic_blocks(config_.global_batch);
  if (comm_.size() > blocks)
    fail_replicated(ExitCode::usage,
                    "--deterministic cuts the batch of " + std::to_string(config_.global_batch) +
                        " rows into " + std::to_string(blocks) + " sample blocks of " +
                        std::to_string(sample_block_) + ", each trained by one rank: " +
                        std::to_string(comm_.size()) + " ranks need " +
                        std::to_string(comm_.size()) + " blocks; use --batch-size " +
                        std::to_string(deterministic_batch_for(comm_.size(), config_.global_batch)) +
                        " (the next size cut into " + std::to_string(comm_.size()) +
                        " blocks) or run at most " + std::to_string(blocks) + " ranks");
  const int64_t n = int64_t(model_.params().size()), p = comm_.size(), r = comm_.rank();
  const int64_t mine = (r + 1) * blocks / p - r * blocks / p;  // the blocks this rank owns
  batch_positions_.resize(size_t(batch_.cols()));
  block_start_.reserve(size_t(mine) + 1);
  for (int i = 0; i < config_.threads; ++i) {
    workers_.emplace_back(model_.config(), sample_block_, 1, config_.alpha);
    workers_.back().read_params_from(model_.params().data());
  }
  exact_.emplace(n, blocks);
  block_grads_.resize(size_t(mine * n));
  for (int64_t k = 0; k < mine; ++k) block_terms_.push_back(block_grads_.data() + k * n);
  thread_peaks_.assign(size_t(config_.threads), std::vector<uint32_t>(size_t(exact_->chunks())));
  peaks_.resize(size_t(exact_->chunks()));
  if (p > 1) {
    piece_sums_.resize(std::min(kExactPiece, size_t(n)));
    share_.resize(piece_sums_.size() / size_t(p) + 1);
    share_counts_.resize(size_t(p));
  }
  step_sums_.resize(kTotals + size_t(blocks));
}

void Trainer::block_gradients(ConstMatrixMap<float> input, ConstMatrixMap<float> target) {
  const Index n = input.cols(), cols = input.rows();
  const size_t params = model_.params().size();
  // This rank's blocks: runs of columns whose positions fall in one block (a shuffled step may
  // lack some positions, so a block may have fewer rows than sample_block_: the same on any P).
  block_start_.clear();
  for (Index i = 0; i < n; ++i)
    if (i == 0 || batch_positions_[size_t(i)] / sample_block_ !=
                      batch_positions_[size_t(i) - 1] / sample_block_)
      block_start_.push_back(i);
  const int64_t mine = int64_t(block_start_.size());
  if (size_t(mine) > block_terms_.size())  // the columns come in position order
    throw std::logic_error("deterministic step: more blocks than this rank owns");
  block_start_.push_back(n);
  const int threads = int(workers_.size());
  // Thread i trains blocks i, i + T, ... with a worker of its own, one thread per product: a
  // block's gradient is the same bits whichever rank and thread computes it.
  const auto train_blocks = [&](int id) {
    Autoencoder<float>& w = workers_[size_t(id)];
    std::vector<uint32_t>& peaks = thread_peaks_[size_t(id)];
    std::fill(peaks.begin(), peaks.end(), 0u);
    for (int64_t k = id; k < mine; k += threads) {
      const Index first = block_start_[size_t(k)], count = block_start_[size_t(k) + 1] - first;
      step_sums_[kTotals + size_t(batch_positions_[size_t(first)] / sample_block_)] =
          w.forward(ConstMatrixMap<float>(input.data() + first * cols, cols, count),
                    ConstMatrixMap<float>(target.data() + first * cols, cols, count));
      const std::span<float> grads(block_grads_.data() + size_t(k) * params, params);
      w.backward(grads);
      exact_->raise_peaks(grads, peaks);
    }
  };
  if (threads == 1) {  // no region: libgomp allocates a team even for one thread
    train_blocks(0);
  } else {
#pragma omp parallel num_threads(threads)
    {
      omp_set_num_threads(1);  // this thread's passes open no regions of their own
      train_blocks(omp_get_thread_num());
    }
  }
  peaks_ = thread_peaks_[0];
  for (size_t i = 1; i < thread_peaks_.size(); ++i)
    for (size_t c = 0; c < peaks_.size(); ++c)
      peaks_[c] = std::max(peaks_[c], thread_peaks_[i][c]);
  if (fault("nan-gradient") && mine > 0) {  // a test's NaN in this rank's first block
    block_grads_[0] = std::nanf("");
    exact_->raise_peaks({block_grads_.data(), params}, peaks_);
  }
}

void Trainer::sum_gradients_exactly() {
  // Every rank's peaks set the grids, so every rank first agrees on them (a NaN or infinity
  // among them stops every rank alike).
  comm_.allreduce_max(std::span<uint32_t>(peaks_));
  if (!FixedSum::finite(peaks_))
    fail_replicated(ExitCode::diverged,
                    "training diverged: a gradient is NaN or infinite at step " +
                        std::to_string(state_.global_step + 1) + " (epoch " +
                        std::to_string(state_.epoch + 1) +
                        "); the last checkpoint is untouched; try a lower --lr");
  const std::span<float> grads = model_.grads();
  const size_t n = grads.size(), ranks = size_t(comm_.size()), rank = size_t(comm_.rank());
  // This step's blocks on this rank (block_start_ ends with the batch's end).
  const std::span<const float* const> terms(block_terms_.data(), block_start_.size() - 1);
  if (ranks == 1) {  // nothing to exchange
    exact_->sum_to_float(terms, peaks_, grads);
    return;
  }
  // In pieces of at most 8 MiB of sums: each rank receives the sums of its share of the piece
  // over all ranks, converts them to float once and gives them to all. Every rank then holds
  // the same floats, whoever converted them.
  for (size_t c0 = 0; c0 < n; c0 += kExactPiece) {
    const size_t len = std::min(kExactPiece, n - c0);
    for (size_t q = 0; q < ranks; ++q)
      share_counts_[q] = int(len * (q + 1) / ranks - len * q / ranks);
    const size_t at = len * rank / ranks, mine = size_t(share_counts_[rank]);
    const std::span<int64_t> sums(piece_sums_.data(), len);
    exact_->sum(terms, peaks_, int64_t(c0), sums);
    comm_.reduce_scatter_sum(sums, {share_.data(), mine}, share_counts_);
    exact_->to_float({share_.data(), mine}, peaks_, int64_t(c0 + at), grads.subspan(c0 + at, mine));
    comm_.allgather(grads.subspan(c0, len), share_counts_);
  }
}

double Trainer::validation_loss() {
  if (!val_) return std::nan("");
  const Index cols = sources_.cols;
  if (config_.deterministic) {
    // Blocks of sample_block_ rows, each on a one-thread worker (the same bits on any rank),
    // this rank's even share of them; their losses summed in block order on every rank (each
    // entry is one rank's value, zeros elsewhere: the allreduce is exact). Early stopping
    // then decides alike on any P.
    const int64_t b = sample_block_, blocks = (val_rows_total_ + b - 1) / b;
    const RowRange share = even_split(blocks, comm_.rank(), comm_.size());
    std::vector<double> losses(size_t(blocks), 0.0);
    comm_.agree([&] {
      for (int64_t k = share.begin; k < share.end; ++k) {
        const int64_t n = std::min(b, val_rows_total_ - k * b);
        val_->read(k * b, n, val_batch_.data(), norm_);
        losses[size_t(k)] = workers_[0].forward(ConstMatrixMap<float>(val_batch_.data(), cols, n));
      }
    });
    comm_.allreduce_sum(std::span<double>(losses));
    double sum = 0.0;
    for (double l : losses) sum += l;
    return sum / double(val_rows_total_);
  }
  // This rank's even share, read a batch at a time: bounded memory for any validation set.
  const RowRange share = even_split(val_rows_total_, comm_.rank(), comm_.size());
  double sums[2] = {0.0, double(share.end - share.begin)};
  comm_.agree([&] {
    for (int64_t first = share.begin; first < share.end; first += model_.max_batch()) {
      const int64_t n = std::min<int64_t>(model_.max_batch(), share.end - first);
      val_->read(first, n, val_batch_.data(), norm_);
      sums[0] += model_.forward(ConstMatrixMap<float>(val_batch_.data(), cols, n));
    }
  });
  comm_.allreduce_sum(std::span<double>(sums));
  return sums[0] / sums[1];
}

void Trainer::save(const std::string& path, int64_t keep) {
  const Clock::time_point t = Clock::now();
  CheckpointHeader h{config_.model, norm_, config_.adam, adam_.steps(), state_};
  save_checkpoint(path, h, model_.params(), adam_.m(), adam_.v(), keep, comm_);
  saved_step_ = state_.global_step;
  timers_.lap(Phase::checkpoint, t);
  log_.metric(Json()
                  .add("event", "checkpoint")
                  .add("epoch", state_.epoch)
                  .add("step", state_.global_step)
                  .add("path", path));
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
      throw Error(ExitCode::other, "replicas differ at step " +
                                       std::to_string(state_.global_step) +
                                       ": this rank's weights are not rank 0's (--check-replicas)");
  });
}

void Trainer::log_start() {
  const int64_t epoch = std::min(state_.epoch, config_.epochs - 1);
  const int64_t steps = data_->steps_in_epoch(epoch), windows = data_->windows_in_epoch(epoch);
  const DataLayout& layout = data_->layout();
  log_.metric(Json()
                  .add("event", "start")
                  .add("ranks", comm_.size())
                  .add("nodes", comm_.nodes())
                  .add("threads", config_.threads)
                  .add("model", to_json(config_.model)
                                    .add("parameters", int64_t(model_.params().size())))
                  .add("data", Json()
                                   .add("file", sources_.files.front().file)
                                   .add("files", int64_t(sources_.files.size()))
                                   .add("dataset", config_.data.dataset)
                                   .add("rows", sources_.rows)
                                   .add("cols", sources_.cols)
                                   .add("steps_per_epoch", steps)
                                   .add("block_rows", layout.block_rows)
                                   .add("window_rows", layout.window_rows)
                                   .add("windows_per_epoch", windows)
                                   .add("in_memory", data_->in_memory())
                                   .add("memory_budget_mib", mib(data_budget_))
                                   .add("memory_mib", mib(data_->memory_bytes())))
                  .add("normalization", Json()
                                            .add("kind", normalize_name(norm_.kind))
                                            .add("rows", norm_.rows))
                  .add("loss_units", norm_.identity() ? "data" : "normalized")
                  .add("global_step", state_.global_step)
                  .add("resumed", resumed_)
                  .add("config", state_.config));
  const bool linear_by_default = config_.default_output && norm_.kind == NormalizeKind::standard;
  log_.line("aetrain: model " + describe(config_.model) + ", " +
            std::to_string(model_.params().size()) + " parameters" +
            (linear_by_default ? " (output linear: the default with --normalize standard)" : "") +
            "; " + std::to_string(sources_.rows) + " rows of " + sources_.name + ", " +
            std::to_string(steps) + " steps of " + std::to_string(config_.global_batch) +
            (windows > 1 ? " in epoch " + std::to_string(epoch + 1) : " per epoch") +
            (norm_.identity() ? ""
                              : "; normalization " + std::string(normalize_name(norm_.kind)) +
                                    ", losses in normalized units"));
  char text[320];
  const std::string budget = (config_.data_memory > 0 ? "--data-memory " : "") +
                             format_mib(data_budget_) +
                             (config_.data_memory > 0 ? "" : " (half this node's memory over its ranks)");
  if (data_->in_memory())
    std::snprintf(text, sizeof text, "data: every row in memory, read once: %s per rank of %s",
                  format_mib(data_->memory_bytes()).c_str(), budget.c_str());
  else
    std::snprintf(text, sizeof text,
                  "data: %lld windows of at most %lld rows in epoch %lld, blocks of %lld rows, "
                  "read while training: %s per rank of %s",
                  (long long)windows, (long long)layout.window_rows, (long long)(epoch + 1),
                  (long long)layout.block_rows, format_mib(data_->memory_bytes()).c_str(),
                  budget.c_str());
  log_.line(text);
}

void Trainer::log_epoch(int64_t epoch, double loss, int64_t rows, double seconds, double val) {
  Json j = Json()
               .add("event", "epoch")
               .add("epoch", epoch + 1)
               .add("step", state_.global_step)
               .add("loss", loss);
  if (val_rows_total_ > 0) j.add("val_loss", val);
  j.add("samples_per_s", double(rows) / seconds).add("seconds", seconds);
  log_.metric(j);
  char text[256];
  std::snprintf(text, sizeof text, "epoch %lld/%lld  loss %.6f%s  %.0f samples/s  %.2f s",
                (long long)(epoch + 1), (long long)config_.epochs, loss,
                val_rows_total_ > 0 ? ("  val_loss " + std::to_string(val)).c_str() : "",
                double(rows) / seconds, seconds);
  log_.line(text);
}

RunEnd Trainer::run() {
  log_start();
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
              best_path() + "): nothing to do");
    return RunEnd::finished;
  }
  const Clock::time_point run_start = Clock::now();
  const int64_t first_step = state_.global_step;
  last_progress_ = run_start;
  EpochEnd end = EpochEnd::next;
  while (state_.epoch < config_.epochs && end == EpochEnd::next) end = run_epoch();
  return finish(end, run_start, first_step);
}

Trainer::EpochEnd Trainer::run_epoch() {
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
    after_step(r, epoch, steps, steps_left, loss_sum / double(rows), start);
    // The epoch's end before a checkpoint of its last step, which then holds early stopping's
    // count of this epoch too.
    if (state_.step_in_epoch == 0) {
      const double seconds = seconds_since(start), val = validation_loss();
      log_epoch(epoch, loss_sum / double(rows), rows, seconds, val);
      stop_early = stops_early(val);
    }
    if (!config_.checkpoint.empty() && config_.checkpoint_every > 0 &&
        state_.global_step % config_.checkpoint_every == 0) {
      save(config_.checkpoint, config_.keep);
      log_.line("checkpoint: " + config_.checkpoint + " (step " +
                std::to_string(state_.global_step) + ")");
    }
  } while (state_.step_in_epoch != 0 && !stop);
  return stop_early ? EpochEnd::early_stop : stop ? EpochEnd::signal : EpochEnd::next;
}

bool Trainer::stops_early(double val) {
  if (config_.early_stop == 0) return false;
  // Keras' and Lightning's rule: better when below the best by more than min_delta.
  if (val < state_.best_val_loss - config_.min_delta) {
    state_.best_val_loss = val;
    state_.best_epoch = state_.epoch;
    state_.epochs_since_best = 0;
    save(best_path(), 1);
    return false;
  }
  return ++state_.epochs_since_best >= config_.early_stop;
}

void Trainer::after_step(const StepResult& r, int64_t epoch, int64_t steps, int64_t steps_left,
                         double loss_so_far, Clock::time_point epoch_start) {
  if (logs_step(state_.global_step)) {
    Json j = Json()
                 .add("event", "step")
                 .add("epoch", epoch + 1)
                 .add("step", state_.global_step)
                 .add("loss", r.loss)
                 .add("lr", r.lr);
    if (!std::isnan(r.grad_norm)) j.add("grad_norm", r.grad_norm);
    log_.metric(j);
    log_.line("epoch " + std::to_string(epoch + 1) + " step " +
              std::to_string(state_.global_step) + "  loss " + std::to_string(r.loss));
  } else if (log_.root() && seconds_since(last_progress_) > 0.25) {
    last_progress_ = Clock::now();
    const double elapsed = seconds_since(epoch_start);
    char text[160];
    std::snprintf(text, sizeof text, "epoch %lld/%lld  %3.0f%%  loss %.6f  ETA %.0f s",
                  (long long)(epoch + 1), (long long)config_.epochs,
                  100.0 * double(steps) / double(steps_left), loss_so_far,
                  elapsed / double(steps) * double(steps_left - steps));
    log_.progress(text);
  }
  if (config_.check_replicas > 0 && state_.global_step % config_.check_replicas == 0)
    check_replicas();
}

RunEnd Trainer::finish(EpochEnd end, Clock::time_point run_start, int64_t first_step) {
  if (!config_.checkpoint.empty() && saved_step_ != state_.global_step)
    save(config_.checkpoint, config_.keep);
  log_end(seconds_since(run_start), state_.global_step - first_step, last_loss_);
  if (end == EpochEnd::early_stop) {
    log_.line("early stop after epoch " + std::to_string(state_.epoch) +
              ": val_loss has not improved by " + shortest(config_.min_delta) + " for " +
              std::to_string(config_.early_stop) + " epochs; the best was epoch " +
              std::to_string(state_.best_epoch) + " (val_loss " + shortest(state_.best_val_loss) +
              "), kept in " +
              best_path());
    return RunEnd::finished;
  }
  if (end == EpochEnd::signal) {
    log_.line("stopped by a signal at step " + std::to_string(state_.global_step) +
              (config_.checkpoint.empty() ? std::string()
                                          : "; checkpoint: " + config_.checkpoint +
                                                " (continue with --resume)"));
    return RunEnd::stopped;
  }
  if (!config_.checkpoint.empty())
    log_.line("checkpoint: " + config_.checkpoint + " (epoch " + std::to_string(state_.epoch) +
              ", step " + std::to_string(state_.global_step) + ")");
  return RunEnd::finished;
}

void Trainer::log_end(double seconds, int64_t steps, double last_loss) {
  log_.metric(Json()
                  .add("event", "end")
                  .add("epochs", state_.epoch)
                  .add("step", state_.global_step)
                  .add("steps", steps)
                  .add("loss", last_loss)
                  .add("seconds", seconds)
                  .add("timers", timers_.summary(comm_))
                  .add("peak_memory_mib", spread(peak_memory_mib(), comm_))
                  .add("memory_before_data_mib", spread(memory_before_data_mib_, comm_))
                  .add("data_memory_mib", spread(mib(data_->memory_bytes()), comm_))
                  .add("data_budget_mib", mib(data_budget_))
                  .add("read_bytes", spread(double(read_bytes() - read_bytes_at_start_), comm_)));
}

}  // namespace aetrain
