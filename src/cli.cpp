#include "aetrain/cli.hpp"

#include <CLI/CLI.hpp>
#include <charconv>
#include <deque>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

#include "aetrain/error.hpp"
#include "aetrain/layers.hpp"
#include "aetrain/normalization.hpp"

namespace aetrain {
namespace {

const std::vector<std::string> kActivations{"relu", "sigmoid", "tanh", "linear"};
const std::vector<std::string> kNormalizations{"none", "standard", "minmax"};

// An integer of at least `min`, with a message that says so.
CLI::Validator integer_from(int64_t min) {
  return CLI::Validator(
      [min](std::string& text) -> std::string {
        int64_t value = 0;
        const char* end = text.data() + text.size();
        const auto [stop, ec] = std::from_chars(text.data(), end, value);
        if (ec != std::errc() || stop != end) return "'" + text + "' is not an integer";
        if (value < min) return "must be at least " + std::to_string(min) + ", got " + text;
        return "";
      },
      "INT>=" + std::to_string(min));
}

// A number in (lo, hi], [lo, hi] or [lo, hi) as `interval` spells it.
CLI::Validator number_in(double lo, double hi, const std::string& interval) {
  const bool lo_open = interval.front() == '(', hi_open = interval.back() == ')';
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double value = 0;
        const char* end = text.data() + text.size();
        const auto [stop, ec] = std::from_chars(text.data(), end, value);
        if (ec != std::errc() || stop != end || !std::isfinite(value))
          return "'" + text + "' is not a number";
        if (value < lo || value > hi || (lo_open && value == lo) || (hi_open && value == hi))
          return "must be in " + interval + ", got " + text;
        return "";
      },
      interval);
}

const double kHuge = std::numeric_limits<double>::max();

// Everything the train subcommand reads, in CLI11's terms.
struct TrainOptions {
  TrainConfig c;
  std::string activation = "relu", code_activation, output_activation;  // "": the default
  std::string shuffle = "on", normalize = "none";
};

void add_train_options(CLI::App& app, TrainOptions& o) {
  TrainConfig& c = o.c;
  app.add_option("--data", c.data.file, "HDF5 file with the training data (required)");
  app.add_option("--dataset", c.data.dataset, "2-D float dataset in it (rows are samples)")
      ->capture_default_str();
  app.add_option("--layers", c.model.encoder_widths,
                 "encoder widths after the input, the last is the code width (e.g. 512,128,32); "
                 "the decoder mirrors them (required)")
      ->delimiter(',')
      ->check(integer_from(1));
  app.add_option("--activation", o.activation, "hidden layers' activation")
      ->check(CLI::IsMember(kActivations))
      ->capture_default_str();
  app.add_option("--code-activation", o.code_activation, "the code layer's (default: --activation)")
      ->check(CLI::IsMember(kActivations));
  app.add_option("--output-activation", o.output_activation,
                 "the reconstruction's activation (default: sigmoid; linear with --normalize "
                 "standard)")
      ->check(CLI::IsMember(kActivations));
  app.add_option("--normalize", o.normalize,
                 "scale each column by statistics of the training rows, stored with the model: "
                 "standard (mean 0, std 1), minmax (to [0, 1]) or none")
      ->check(CLI::IsMember(kNormalizations))
      ->capture_default_str();
  app.add_option("--epochs", c.epochs, "train until this many epochs are complete")
      ->check(integer_from(1))
      ->capture_default_str();
  app.add_option("--batch-size", c.global_batch, "GLOBAL batch size, split over the ranks")
      ->check(integer_from(1))
      ->capture_default_str();
  app.add_option("--lr", c.adam.learning_rate, "Adam's learning rate")
      ->check(number_in(0, kHuge, "(0, inf)"))
      ->capture_default_str();
  app.add_option("--beta1", c.adam.beta1, "Adam's beta1")
      ->check(number_in(0, 1, "[0, 1)"))
      ->capture_default_str();
  app.add_option("--beta2", c.adam.beta2, "Adam's beta2")
      ->check(number_in(0, 1, "[0, 1)"))
      ->capture_default_str();
  app.add_option("--epsilon", c.adam.epsilon, "Adam's epsilon")
      ->check(number_in(0, kHuge, "(0, inf)"))
      ->capture_default_str();
  app.add_option("--alpha", c.alpha,
                 "weight of the encode loss mean((code - input)^2); needs code width = input width")
      ->check(number_in(0, 1, "[0, 1]"))
      ->capture_default_str();
  app.add_option("--seed", c.seed, "seed of the initial weights and the batch order")
      ->capture_default_str();
  app.add_option("--shuffle", o.shuffle, "shuffle the batches every epoch (on) or not (off)")
      ->check(CLI::IsMember({"on", "off", "true", "false"}))
      ->capture_default_str();
  app.add_option("--threads", c.threads,
                 "threads per rank (default: OMP_NUM_THREADS, SLURM_CPUS_PER_TASK, or the cores "
                 "per rank)")
      ->check(integer_from(1));
  app.add_option("--val-data", c.val.file, "HDF5 file with validation data (default: --data)");
  app.add_option("--val-dataset", c.val.dataset, "validation dataset (default: --dataset)");
  app.add_option("--checkpoint", c.checkpoint, "checkpoint file to write (and to --resume)");
  app.add_option("--checkpoint-every", c.checkpoint_every,
                 "steps between checkpoints; 0: only at the end")
      ->check(integer_from(0))
      ->capture_default_str();
  app.add_option("--keep", c.keep,
                 "checkpoints to keep: the newest at --checkpoint, older ones as "
                 "CHECKPOINT.step<N>")
      ->check(integer_from(1))
      ->capture_default_str();
  app.add_option("--check-replicas", c.check_replicas,
                 "steps between checks that every rank holds the same weights; 0: never")
      ->check(integer_from(0))
      ->capture_default_str();
  app.add_flag("--resume", c.resume, "continue from --checkpoint if it exists");
  app.add_option("--init-from", c.init_from,
                 "start from this checkpoint's weights (fresh optimizer and data cursor)");
  app.add_option("--metrics", c.metrics, "write JSON Lines metrics to this file");
  app.add_option("--log-every", c.log_every, "steps between step lines; 0: one line per epoch")
      ->check(integer_from(0))
      ->capture_default_str();
  app.add_flag("--quiet", c.quiet, "no progress output (errors and warnings still print)");
}

// Options every block-reading command shares.
void add_block_options(CLI::App& app, DataSource& data, int64_t& block_rows, int& threads) {
  app.add_option("--data", data.file, "HDF5 file with the rows (required)");
  app.add_option("--dataset", data.dataset, "2-D float dataset in it")->capture_default_str();
  app.add_option("--block-rows", block_rows, "rows each rank holds at once")
      ->check(integer_from(1))
      ->capture_default_str();
  app.add_option("--threads", threads, "threads per rank (default as for train)")
      ->check(integer_from(1));
}

void add_encode_options(CLI::App& app, EncodeConfig& c) {
  app.add_option("--model", c.model, "checkpoint or PCA model file (required)");
  add_block_options(app, c.data, c.block_rows, c.threads);
  app.add_option("--out", c.out, "HDF5 file for the codes, new or existing (required)");
  app.add_option("--out-dataset", c.out_dataset, "dataset for the codes")->capture_default_str();
  app.add_flag("--overwrite", c.overwrite, "replace an existing output dataset");
}

void add_evaluate_options(CLI::App& app, EvaluateConfig& c) {
  app.add_option("--model", c.model, "checkpoint or PCA model file (required)");
  add_block_options(app, c.data, c.block_rows, c.threads);
  app.add_option("--per-sample", c.per_sample, "HDF5 file for each row's reconstruction error");
  app.add_option("--per-sample-dataset", c.per_sample_dataset, "dataset for them")
      ->capture_default_str();
  app.add_option("--reconstruct", c.reconstruct, "HDF5 file for the reconstructions");
  app.add_option("--reconstruct-dataset", c.reconstruct_dataset, "dataset for them")
      ->capture_default_str();
  app.add_flag("--overwrite", c.overwrite, "replace existing output datasets");
}

void add_pca_options(CLI::App& app, PcaConfig& c, std::string& normalize) {
  add_block_options(app, c.data, c.block_rows, c.threads);
  app.add_option("--normalize", normalize,
                 "fit the PCA to the columns scaled as train --normalize does: standard, minmax "
                 "or none; stored with the model")
      ->check(CLI::IsMember(kNormalizations))
      ->capture_default_str();
  app.add_option("--components", c.components, "principal components to keep (required)")
      ->check(integer_from(1));
  app.add_option("--out", c.out, "model file to write (required)");
}

void add_inspect_options(CLI::App& app, InspectConfig& c) {
  app.add_option("path", c.path, "checkpoint or model file (required)");
  app.add_flag("--json", c.json, "one JSON object, for scripts");
}

// Settles what the options imply for each other.
TrainConfig finish(TrainOptions o) {
  TrainConfig c = o.c;
  c.model.activation = activation_from_name(o.activation);
  c.model.code_activation =
      activation_from_name(o.code_activation.empty() ? o.activation : o.code_activation);
  c.normalize = normalize_from_name(o.normalize);
  // A sigmoid cannot produce standardized values.
  c.default_output = o.output_activation.empty();
  c.model.output_activation =
      !c.default_output                         ? activation_from_name(o.output_activation)
      : c.normalize == NormalizeKind::standard ? Activation::linear
                                               : Activation::sigmoid;
  c.shuffle = o.shuffle == "on" || o.shuffle == "true";
  // Validation data: --val-dataset alone means the training file; --val-data alone, the same dataset.
  if (c.val.file.empty() && !o.c.val.dataset.empty()) c.val.file = c.data.file;
  if (!c.val.file.empty() && c.val.dataset.empty()) c.val.dataset = c.data.dataset;
  return c;
}

// Applies a TOML file's `key = value` lines to the options not given on the command line.
// (CLI11 2.1 reads config files for the main app only, so subcommands do it here.)
void apply_config_file(CLI::App& app, const std::string& path) {
  if (!std::filesystem::is_regular_file(path))
    throw CLI::FileError::Missing(path);
  CLI::ConfigTOML toml;
  for (const CLI::ConfigItem& item : toml.from_file(path)) {
    if (item.name == "++" || item.name == "--") continue;  // a [section] opens or closes
    if (!item.parents.empty() && item.parents != std::vector<std::string>{app.get_name()})
      throw CLI::ConfigError(path + ": unknown section [" + item.parents.front() + "]");
    CLI::Option* op = app.get_option_no_throw("--" + item.name);
    if (!op || item.name == "config")
      throw CLI::ConfigError(path + ": unknown key '" + item.name + "'");
    if (!op->empty()) continue;  // the command line wins
    if (op->get_expected_min() == 0)
      op->add_result(toml.to_flag(item));
    else
      op->add_result(item.inputs);
    op->run_callback();  // converts and validates like a flag
  }
}

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (ch == '\n') {
      out += "\\n";
      continue;
    }
    out += ch;
  }
  return out + "\"";
}

// The shortest text that reads back as exactly v.
std::string number(double v) {
  char text[32];
  const auto [end, ec] = std::to_chars(text, text + sizeof text, v);
  return std::string(text, end);
}

}  // namespace

Command parse_command_line(int argc, const char* const* argv) {
  CLI::App app{"aetrain: data-parallel autoencoders on HDF5 data (run under mpirun -n P)"};
  app.require_subcommand(1, 1);
  app.set_version_flag("--version", std::string("aetrain ") + AETRAIN_VERSION);
  Command cmd;
  TrainOptions train;
  // Every subcommand: its options, a --config file, the options it cannot do without.
  struct Sub {
    CLI::App* app;
    std::string config_file;
    std::vector<std::string> required;
  };
  std::deque<Sub> subs;  // CLI11 binds to their config_file: they must never move
  auto add = [&](const char* name, const char* help, std::vector<std::string> required) {
    CLI::App* sub = app.add_subcommand(name, help);
    subs.push_back({sub, "", std::move(required)});
    sub->add_option("--config", subs.back().config_file,
                    "read options from this TOML file (key = value, keys named like the long "
                    "options; flags override it)");
    return sub;
  };
  add_train_options(*add("train", "train an autoencoder", {"--data", "--layers"}), train);
  add_encode_options(*add("encode", "write the code of every row", {"--model", "--data", "--out"}),
                     cmd.encode);
  add_evaluate_options(
      *add("evaluate", "print the reconstruction error {\"mse\", \"rows\"}", {"--model", "--data"}),
      cmd.evaluate);
  std::string pca_normalize = "none";
  add_pca_options(*add("pca", "fit an exact PCA, usable as a model by encode and evaluate",
                       {"--data", "--components", "--out"}),
                  cmd.pca, pca_normalize);
  add_inspect_options(*add("inspect", "show what a checkpoint or model file holds", {"path"}),
                      cmd.inspect);
  train.c.val.dataset.clear();  // "" until given, so finish() can tell

  CLI::App* chosen = nullptr;
  try {
    app.parse(argc, argv);
    for (Sub& sub : subs) {
      if (!sub.app->parsed()) continue;
      chosen = sub.app;
      if (!sub.config_file.empty()) apply_config_file(*sub.app, sub.config_file);
      for (const std::string& name : sub.required)
        if (sub.app->get_option(name)->empty())
          throw Error(ExitCode::usage,
                      name + " is required (on the command line or in --config)",
                      /*collective=*/true);
    }
  } catch (const CLI::CallForHelp& e) {
    std::ostringstream out, err;
    app.exit(e, out, err);
    throw HelpRequested(out.str());
  } catch (const CLI::CallForVersion& e) {
    throw HelpRequested(e.what() + std::string("\n"));
  } catch (const CLI::Error& e) {
    // Every rank parses the same argv, so every rank fails alike.
    for (Sub& sub : subs)
      if (sub.app->parsed()) chosen = sub.app;
    throw Error(ExitCode::usage,
                std::string(e.what()) + " (see aetrain " +
                    (chosen ? chosen->get_name() + " " : std::string()) + "--help)",
                /*collective=*/true);
  }
  cmd.name = chosen->get_name();
  cmd.train = finish(train);
  cmd.pca.normalize = normalize_from_name(pca_normalize);
  cmd.config_text = to_toml(cmd.train);
  return cmd;
}

std::string to_toml(const TrainConfig& c) {
  std::ostringstream s;
  s << "data = " << toml_string(c.data.file) << "\n";
  s << "dataset = " << toml_string(c.data.dataset) << "\n";
  s << "layers = [";
  for (size_t i = 0; i < c.model.encoder_widths.size(); ++i)
    s << (i ? ", " : "") << c.model.encoder_widths[i];
  s << "]\n";
  s << "activation = " << toml_string(activation_name(c.model.activation)) << "\n";
  s << "code-activation = " << toml_string(activation_name(c.model.code_activation)) << "\n";
  s << "output-activation = " << toml_string(activation_name(c.model.output_activation)) << "\n";
  s << "normalize = " << toml_string(normalize_name(c.normalize)) << "\n";
  s << "epochs = " << c.epochs << "\n";
  s << "batch-size = " << c.global_batch << "\n";
  s << "lr = " << number(c.adam.learning_rate) << "\n";
  s << "beta1 = " << number(c.adam.beta1) << "\n";
  s << "beta2 = " << number(c.adam.beta2) << "\n";
  s << "epsilon = " << number(c.adam.epsilon) << "\n";
  s << "alpha = " << number(c.alpha) << "\n";
  s << "seed = " << c.seed << "\n";
  s << "shuffle = " << toml_string(c.shuffle ? "on" : "off") << "\n";
  if (c.threads > 0) s << "threads = " << c.threads << "\n";
  if (!c.val.file.empty()) {
    s << "val-data = " << toml_string(c.val.file) << "\n";
    s << "val-dataset = " << toml_string(c.val.dataset) << "\n";
  }
  if (!c.checkpoint.empty()) s << "checkpoint = " << toml_string(c.checkpoint) << "\n";
  s << "checkpoint-every = " << c.checkpoint_every << "\n";
  s << "keep = " << c.keep << "\n";
  s << "check-replicas = " << c.check_replicas << "\n";
  if (!c.init_from.empty()) s << "init-from = " << toml_string(c.init_from) << "\n";
  if (!c.metrics.empty()) s << "metrics = " << toml_string(c.metrics) << "\n";
  s << "log-every = " << c.log_every << "\n";
  return s.str();
}

}  // namespace aetrain
