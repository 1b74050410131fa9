#include "startup.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "aetrain/error.hpp"
#include "aetrain/model.hpp"
#include "aetrain/options.hpp"
#include "aetrain/outputs.hpp"
#include "aetrain/runtime.hpp"
#include "aetrain/sampling.hpp"
#include "aetrain/sources.hpp"

namespace aetrain {
namespace {

using Clock = Timers::Clock;

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
                        std::to_string(m.encoder_widths.back()) + " wide, " + sources.name +
                        " has " + std::to_string(m.input_dim) + " columns");
  return m;
}

// --deterministic trains each sample block on one rank: refuses more ranks than blocks.
void check_sample_blocks(const TrainConfig& config, int64_t block_rows, const Comm& comm) {
  const int64_t blocks = deterministic_blocks(config.global_batch);
  if (comm.size() > blocks)
    fail_replicated(
        ExitCode::usage,
        "--deterministic cuts the batch of " + std::to_string(config.global_batch) + " rows into " +
            std::to_string(blocks) + " sample blocks of " + std::to_string(block_rows) +
            ", each trained by one rank: " + std::to_string(comm.size()) + " ranks need " +
            std::to_string(comm.size()) + " blocks; use --batch-size " +
            std::to_string(deterministic_batch_for(comm.size(), config.global_batch)) +
            " (the next size cut into " + std::to_string(comm.size()) + " blocks) or run at most " +
            std::to_string(blocks) + " ranks");
}

// True when rank 0 (the rank that reads and writes checkpoints) sees `path`.
bool root_sees(const std::string& path, const Comm& comm) {
  int64_t seen = comm.rank() == 0 && !path.empty() && std::filesystem::exists(path) ? 1 : 0;
  comm.broadcast(std::span<int64_t>(&seen, 1));
  return seen == 1;
}

// The options against the file of --resume (every option by its rule in the option table:
// refused, with one line naming them all, when one that must match differs; a notice for those
// that may change) or of --init-from (the model's options alone).
void check_options_against(const Checkpoint& c, const std::string& path, bool resume,
                           const RunStart& s, Log& log) {
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
  stored.counts = h.transform.asked;
  stored.normalize = h.normalization.kind;
  TrainConfig now = s.config;
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
    now.data.files = identity(s.sources.files);
  }
  std::vector<OptionChange> changes = changed_options(stored, now);
  const auto differs = [&](const std::string& option) {
    return std::any_of(changes.begin(), changes.end(),
                       [&](const OptionChange& o) { return o.option == option; });
  };
  // Report causes, not their consequences: a defaulted activation follows another option.
  std::erase_if(changes, [&](const OptionChange& o) {
    return (!resume && o.rule != ResumeRule::model) ||
           (o.option == "--output-activation" && s.config.default_output &&
            differs("--normalize")) ||
           (o.option == "--code-activation" && s.config.default_code && differs("--activation"));
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
  if (h.model.input_dim != s.config.model.input_dim)
    fail_replicated(ExitCode::checkpoint, path + ": holds a model for rows of " +
                                              std::to_string(h.model.input_dim) + " columns (" +
                                              describe(h.model) + "); " + s.sources.name + " has " +
                                              std::to_string(s.config.model.input_dim));
  if (!notices.empty()) log.line("resuming " + path + " with " + notices);
}

// The data probed again with a model file's transform where it differs from the one the options
// fitted (its columns, found by name: the same genes even where the data flags others).
void refit_transform(RunStart& s, const RowTransform& model, const Comm& comm) {
  if (model == s.sources.transform || model.identity()) return;
  s.sources =
      probe_sources(s.config.data, comm, accepted_by(s.config.normalize, s.config.counts), model);
  s.config.model.input_dim = s.sources.cols;
  if (s.val)
    s.val = probe_sources(s.config.val, comm, accepted_by(s.config.normalize, s.config.counts),
                          s.sources.transform);
}

// --resume's checkpoint or --init-from's file, checked against the options, into s.from.
void start_from_checkpoints(RunStart& s, const Comm& comm, Log& log) {
  const bool exists = root_sees(s.config.checkpoint, comm);
  if (exists && !s.config.resume && !s.config.overwrite)
    fail_replicated(ExitCode::usage, s.config.checkpoint +
                                         ": a checkpoint is already there; pass --resume to "
                                         "continue it, or choose another --checkpoint path");
  if (s.config.resume && s.config.checkpoint.empty())
    fail_replicated(ExitCode::usage, "--resume needs --checkpoint PATH");

  if (s.config.resume && exists) {
    s.from = load_checkpoint(s.config.checkpoint, comm);
    const Checkpoint& c = *s.from;
    const CheckpointHeader& h = c.header;
    if (!c.has_training_state)
      fail_replicated(ExitCode::checkpoint,
                      s.config.checkpoint + ": holds a " +
                          (c.kind == ModelKind::pca
                               ? std::string("PCA model")
                               : "model without training state (no " + c.missing_state + ")") +
                          "; --resume needs a checkpoint written by aetrain train; use "
                          "--init-from to start from its weights");
    refit_transform(s, h.transform, comm);
    check_options_against(c, s.config.checkpoint, /*resume=*/true, s, log);
    // The layout decides the batches: the checkpoint's (files before format 3: every row in
    // memory, one window).
    s.config.window_rows = h.train.window_rows > 0 ? h.train.window_rows : s.sources.rows;
    if (h.train.window_rows > 0) s.config.data_block_rows = h.train.block_rows;
    s.norm = h.normalization;
    s.state.epoch = h.train.epoch;
    s.state.step_in_epoch = h.train.step_in_epoch;
    s.state.global_step = h.train.global_step;
    s.state.best_val_loss = h.train.best_val_loss;
    s.state.best_epoch = h.train.best_epoch;
    s.state.epochs_since_best = h.train.epochs_since_best;
    s.resumed = true;
    log.line("resuming " + s.config.checkpoint + " at epoch " + std::to_string(s.state.epoch + 1) +
             ", step " + std::to_string(s.state.global_step) + " (written by " +
             std::to_string(h.train.world_size) + " ranks, now " + std::to_string(comm.size()) +
             ")");
    return;
  }
  if (s.config.resume)
    log.line("no checkpoint at " + s.config.checkpoint + " yet: starting a new run");
  if (!s.config.init_from.empty()) {
    s.from = load_checkpoint(s.config.init_from, comm);
    refit_transform(s, s.from->header.transform, comm);
    check_options_against(*s.from, s.config.init_from, /*resume=*/false, s, log);
    s.norm = s.from->header.normalization;
    log.line("starting from the weights of " + s.config.init_from +
             (s.norm.identity() ? "" : " and its normalization statistics"));
  }
}

// The statistics pass over the training rows (for --normalize, or to count the rows of total 0
// under --size-factor).
void fit_statistics(RunStart& s, const Comm& comm, Log& log) {
  const Clock::time_point start = Clock::now();
  int64_t zero_total = 0;
  const Moments moments = dataset_moments(s.sources, Scatter::diagonal,
                                          rows_per_block(s.sources.cols), comm, &zero_total);
  if (s.sources.transform.asked.size_factor > 0)
    log.line("counts: " + describe(s.sources.transform) + "; " + std::to_string(zero_total) +
             " of " + std::to_string(s.sources.rows) + " rows have a total of 0 and stay zeros");
  if (s.config.normalize == NormalizeKind::none || !s.norm.identity()) return;
  int64_t constant = 0;
  s.norm = fit_normalization(s.config.normalize, moments, &constant);
  if (constant > 0)
    log.warn(s.sources.name + ": " +
             constant_columns_warning(constant, s.sources.cols, s.config.normalize));
  char text[256];
  std::snprintf(text, sizeof text,
                "normalization: %s statistics of %lld rows x %lld columns in %.2f s",
                name_of(s.norm.kind), (long long)moments.rows, (long long)s.sources.cols,
                seconds_since(start));
  log.line(text);
}

// The data layout, from the options, the checkpoint resumed and the memory budget.
void choose_data_layout(RunStart& s, const Comm& comm) {
  s.data_budget = s.config.data_memory > 0 ? s.config.data_memory : default_data_memory(comm);
  comm.agree([&] {  // every rank reaches the same verdict; agree keeps it one line
    s.layout = choose_layout(
        s.sources, s.config.data_block_rows, s.config.window_rows, s.data_budget,
        s.config.data_memory > 0 ? "--data-memory" : "half this node's memory over its ranks",
        s.config.global_batch, comm.size(), s.norm, s.sample_block);
  });
  s.config.data_block_rows = s.state.block_rows = s.layout.block_rows;
  s.config.window_rows = s.state.window_rows = s.layout.window_rows;
  s.state.config = to_toml(s.config);  // the effective configuration, layout included
}

}  // namespace

RunStart start_run(const TrainConfig& config, const Comm& comm, Log& log) {
  RunStart s;
  s.config = config;
  const Accept accept = accepted_by(config.normalize, config.counts);
  s.sources = probe_sources(config.data, comm, accept, asked_for(config.counts));
  s.sample_block = config.deterministic ? deterministic_block_rows(config.global_batch) : 1;
  s.config.model = model_for(config, s.sources);
  if (config.deterministic) check_sample_blocks(config, s.sample_block, comm);
  s.state.seed = config.seed;
  s.state.global_batch = config.global_batch;
  s.state.world_size = comm.size();
  s.state.data_file = s.sources.files.front().file;
  s.state.dataset = config.data.dataset;
  s.state.sources = s.sources.files;
  if (config.global_batch < comm.size())
    log.warn("--batch-size " + std::to_string(config.global_batch) + " is smaller than the " +
             std::to_string(comm.size()) + " ranks: some ranks will have no rows to train on");
  if (!config.val.files.empty())
    s.val = probe_sources(config.val, comm, accept, s.sources.transform);
  check_outputs(train_outputs(config, s.sources, s.val ? &*s.val : nullptr), comm);
  start_from_checkpoints(s, comm, log);
  // Only now, with the run accepted: a refused run must not truncate an earlier run's metrics.
  if (!config.metrics.empty()) log.open_metrics(config.metrics, /*append=*/s.resumed, comm);
  // Fresh statistics, unless --resume's or --init-from's file brought them.
  if ((config.normalize != NormalizeKind::none && s.norm.identity()) ||
      s.sources.transform.asked.size_factor > 0)
    fit_statistics(s, comm, log);
  choose_data_layout(s, comm);
  return s;
}

}  // namespace aetrain
