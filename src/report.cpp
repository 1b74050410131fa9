#include "report.hpp"

#include <cmath>
#include <cstdio>

#include "aetrain/layers.hpp"
#include "aetrain/model.hpp"
#include "aetrain/runtime.hpp"

namespace aetrain {
namespace {

using Clock = Timers::Clock;

double mib(int64_t bytes) { return double(bytes) / double(1 << 20); }

std::string format_mib(int64_t bytes) {
  char text[32];
  if (bytes >= int64_t(1) << 30)
    std::snprintf(text, sizeof text, "%.1f GiB", double(bytes) / double(1 << 30));
  else
    std::snprintf(text, sizeof text, "%.1f MiB", mib(bytes));
  return text;
}

}  // namespace

Report::Report(const TrainConfig& config, const Comm& comm, Log& log)
    : config_(config), comm_(comm), log_(log) {}

void Report::start(const Sources& sources, TrainingData& data, const Normalization& norm,
                   int64_t parameters, const TrainState& state, bool resumed, const DataUse& use) {
  const int64_t epoch = std::min(state.epoch, config_.epochs - 1);
  const int64_t steps = data.steps_in_epoch(epoch), windows = data.windows_in_epoch(epoch);
  const DataLayout& layout = data.layout();
  log_.metric(
      Json()
          .add("event", "start")
          .add("ranks", comm_.size())
          .add("nodes", comm_.nodes())
          .add("threads", config_.threads)
          .add("model", to_json(config_.model).add("parameters", parameters))
          .add("data", Json()
                           .add("file", sources.files.front().file)
                           .add("files", int64_t(sources.files.size()))
                           .add("dataset", config_.data.dataset)
                           .add("rows", sources.rows)
                           .add("cols", sources.cols)
                           .add("transform", describe(sources.transform))
                           .add("steps_per_epoch", steps)
                           .add("block_rows", layout.block_rows)
                           .add("window_rows", layout.window_rows)
                           .add("windows_per_epoch", windows)
                           .add("in_memory", data.in_memory())
                           .add("memory_budget_mib", mib(use.budget))
                           .add("memory_mib", mib(data.memory_bytes())))
          .add("normalization", Json().add("kind", name_of(norm.kind)).add("rows", norm.rows))
          .add("loss_units", norm.identity() ? "data" : "normalized")
          .add("global_step", state.global_step)
          .add("resumed", resumed)
          .add("config", state.config));
  const bool linear_by_default = config_.default_output && norm.kind == NormalizeKind::standard;
  log_.line("aetrain: model " + describe(config_.model) + ", " + std::to_string(parameters) +
            " parameters" +
            (linear_by_default ? " (output linear: the default with --normalize standard)" : "") +
            "; " + std::to_string(sources.rows) + " rows of " + sources.name + ", " +
            std::to_string(steps) + " steps of " + std::to_string(config_.global_batch) +
            (windows > 1 ? " in epoch " + std::to_string(epoch + 1) : " per epoch") +
            (norm.identity() ? ""
                             : "; normalization " + std::string(name_of(norm.kind)) +
                                   ", losses in normalized units"));
  char text[320];
  const std::string budget =
      (config_.data_memory > 0 ? "--data-memory " : "") + format_mib(use.budget) +
      (config_.data_memory > 0 ? "" : " (half this node's memory over its ranks)");
  if (data.in_memory())
    std::snprintf(text, sizeof text, "data: every row in memory, read once: %s per rank of %s",
                  format_mib(data.memory_bytes()).c_str(), budget.c_str());
  else
    std::snprintf(text, sizeof text,
                  "data: %lld windows of at most %lld rows in epoch %lld, blocks of %lld rows, "
                  "read while training: %s per rank of %s",
                  (long long)windows, (long long)layout.window_rows, (long long)epoch + 1,
                  (long long)layout.block_rows, format_mib(data.memory_bytes()).c_str(),
                  budget.c_str());
  log_.line(text);
}

void Report::epoch(int64_t epoch, double loss, int64_t rows, double seconds, double val,
                   bool validated, const TrainState& state) {
  Json j = Json()
               .add("event", "epoch")
               .add("epoch", epoch + 1)
               .add("step", state.global_step)
               .add("loss", loss);
  if (validated) j.add("val_loss", val);
  j.add("samples_per_s", double(rows) / seconds).add("seconds", seconds);
  log_.metric(j);
  char text[256];
  std::snprintf(text, sizeof text, "epoch %lld/%lld  loss %.6f%s  %.0f samples/s  %.2f s",
                (long long)epoch + 1, (long long)config_.epochs, loss,
                validated ? ("  val_loss " + std::to_string(val)).c_str() : "",
                double(rows) / seconds, seconds);
  log_.line(text);
}

void Report::step(const StepResult& r, const TrainState& state, int64_t epoch, int64_t steps,
                  int64_t steps_left, double loss_so_far, Clock::time_point epoch_start) {
  if (logs_step(state.global_step)) {
    Json j = Json()
                 .add("event", "step")
                 .add("epoch", epoch + 1)
                 .add("step", state.global_step)
                 .add("loss", r.loss)
                 .add("lr", r.lr);
    if (!std::isnan(r.grad_norm)) j.add("grad_norm", r.grad_norm);
    log_.metric(j);
    log_.line("epoch " + std::to_string(epoch + 1) + " step " + std::to_string(state.global_step) +
              "  loss " + std::to_string(r.loss));
  } else if (log_.root() && seconds_since(last_progress_) > 0.25) {
    last_progress_ = Clock::now();
    const double elapsed = seconds_since(epoch_start);
    char text[160];
    std::snprintf(text, sizeof text, "epoch %lld/%lld  %3.0f%%  loss %.6f  ETA %.0f s",
                  (long long)epoch + 1, (long long)config_.epochs,
                  100.0 * double(steps) / double(steps_left), loss_so_far,
                  elapsed / double(steps) * double(steps_left - steps));
    log_.progress(text);
  }
}

void Report::data_range(const std::string& name, const TrainingData& data,
                        const Normalization& norm) {
  // What the output activation can produce, against the values the model is to reproduce.
  const double inf = std::numeric_limits<double>::infinity();
  const Activation out = config_.model.output_activation;
  const double lo = out == Activation::tanh ? -1.0 : out == Activation::linear ? -inf : 0.0;
  const double hi = out == Activation::sigmoid || out == Activation::tanh ? 1.0 : inf;
  const auto [local_lo, local_hi] = data.range();
  double range[2] = {local_lo, -local_hi};  // min and -max in one reduction
  comm_.allreduce_min(std::span<double>(range));
  if (range[0] >= lo && -range[1] <= hi) return;
  const std::string fix = norm.kind == NormalizeKind::standard
                              ? "pass --output-activation linear (the default with --normalize "
                                "standard) or use --normalize minmax"
                              : "pass --normalize minmax (to [0, 1]), --normalize standard (with a "
                                "linear output), or --output-activation linear";
  log_.warn(name + ": the training data spans " +
            (data.in_memory() ? "" : "(in its first window) ") + "[" + shortest(range[0]) + ", " +
            shortest(-range[1]) + "]" +
            (norm.identity() ? "" : std::string(" after --normalize ") + name_of(norm.kind)) +
            ", but a " + name_of(out) + " output produces only [" + shortest(lo) + ", " +
            shortest(hi) + "], so the model cannot fit it: " + fix);
}

void Report::checkpoint(const std::string& path, const TrainState& state) {
  log_.metric(Json()
                  .add("event", "checkpoint")
                  .add("epoch", state.epoch)
                  .add("step", state.global_step)
                  .add("path", path));
}

void Report::end(EpochEnd how, double seconds, int64_t steps, double last_loss,
                 const TrainState& state, const Timers& timers, const TrainingData& data,
                 const DataUse& use) {
  log_.metric(Json()
                  .add("event", "end")
                  .add("epochs", state.epoch)
                  .add("step", state.global_step)
                  .add("steps", steps)
                  .add("loss", last_loss)
                  .add("seconds", seconds)
                  .add("timers", timers.summary(comm_))
                  .add("peak_memory_mib", spread(peak_memory_mib(), comm_))
                  .add("memory_before_data_mib", spread(use.before_mib, comm_))
                  .add("data_memory_mib", spread(mib(data.memory_bytes()), comm_))
                  .add("data_budget_mib", mib(use.budget))
                  .add("read_bytes", spread(double(read_bytes() - use.read_at_start), comm_)));
  const std::string& checkpoint = config_.checkpoint;
  if (how == EpochEnd::early_stop)
    log_.line("early stop after epoch " + std::to_string(state.epoch) +
              ": val_loss has not improved by " + shortest(config_.min_delta) + " for " +
              std::to_string(config_.early_stop) + " epochs; the best was epoch " +
              std::to_string(state.best_epoch) + " (val_loss " + shortest(state.best_val_loss) +
              "), kept in " + checkpoint + ".best");
  else if (how == EpochEnd::signal)
    log_.line("stopped by a signal at step " + std::to_string(state.global_step) +
              (checkpoint.empty() ? std::string()
                                  : "; checkpoint: " + checkpoint + " (continue with --resume)"));
  else if (!checkpoint.empty())
    log_.line("checkpoint: " + checkpoint + " (epoch " + std::to_string(state.epoch) + ", step " +
              std::to_string(state.global_step) + ")");
}

}  // namespace aetrain
