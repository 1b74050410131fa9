#include "aetrain/cli.hpp"

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>
#include <type_traits>
#include <utility>

#include "aetrain/error.hpp"
#include "aetrain/layers.hpp"
#include "aetrain/noise.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/schedule.hpp"
#include "aetrain/sources.hpp"
#include "aetrain/version.hpp"

namespace aetrain {
namespace {

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

// The path of a dataset in an HDF5 file: a name below the root group.
CLI::Validator dataset_path(const std::string& example) {
  return CLI::Validator(
      [example](std::string& text) -> std::string {
        if (text.find_first_not_of('/') == std::string::npos)
          return "'" + text + "' names no dataset; give a path such as " + example;
        return "";
      },
      "PATH");
}

// A --features value: var:COLUMN or @FILE.
CLI::Validator features_spec() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if ((text.starts_with("var:") && text.size() > 4) ||
            (text.starts_with('@') && text.size() > 1))
          return "";
        return "'" + text +
               "' is neither var:COLUMN (a boolean column of the AnnData var, e.g. "
               "var:highly_variable) nor @FILE (column names or ids, one a line)";
      },
      "var:COLUMN|@FILE");
}

// An AnnData obsm key: a name, no path.
CLI::Validator obsm_key() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (!text.empty() && text.find('/') == std::string::npos && text != "." && text != "..")
          return "";
        return "'" + text + "' is not an obsm key (a name such as X_aetrain, without '/')";
      },
      "KEY");
}

// A --noise value (noise.hpp's parse_noise says what is wrong).
CLI::Validator noise_spec() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          parse_noise(text);
          return "";
        } catch (const std::invalid_argument& e) {
          return e.what();
        }
      },
      "none|gaussian:SIGMA|mask:P");
}

// Options whose values are words: each type's words, the first one of a value being its name.
template <class E>
std::vector<std::pair<std::string, E>> words(E) {
  std::vector<std::pair<std::string, E>> out;
  for (const auto& [value, name] : EnumNames<E>::table) out.emplace_back(name, value);
  return out;
}
std::vector<std::pair<std::string, bool>> words(bool) {
  return {{"on", true}, {"off", false}, {"true", true}, {"false", false}};
}
template <class T>
constexpr bool kWords = std::is_enum_v<T> || std::is_same_v<T, bool>;

template <class T>
std::string word_of(T value) {
  for (const auto& [word, v] : words(T{}))
    if (v == value) return word;
  return "?";
}

// Bytes from "4096", "512MiB", "2GiB", "1.5G" (K, M, G, T alone: binary, as in SLURM), "100MB"
// (decimal); none when the text is not a positive size.
std::optional<int64_t> parse_size(const std::string& text) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [unit, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || !(value > 0)) return std::nullopt;
  static const std::pair<const char*, double> units[] = {
      {"", 1},         {"B", 1},      {"K", 0x1p10},   {"KiB", 0x1p10}, {"kB", 1e3},
      {"KB", 1e3},     {"M", 0x1p20}, {"MiB", 0x1p20}, {"MB", 1e6},     {"G", 0x1p30},
      {"GiB", 0x1p30}, {"GB", 1e9},   {"T", 0x1p40},   {"TiB", 0x1p40}, {"TB", 1e12}};
  for (const auto& [name, factor] : units)
    if (std::string_view(unit, size_t(end - unit)) == name && value * factor < 0x1p62)
      return int64_t(value * factor);
  return std::nullopt;
}

// Whether an option is part of the effective configuration that checkpoints store (to_toml).
enum class Stored { always, if_set, never };

// What a row says beyond its name, field and help. An option's resume rule is must_match
// unless its row says otherwise: a new option is refused on change until someone decides.
struct Extra {
  std::optional<CLI::Validator> check = std::nullopt;
  Stored stored = Stored::always;
  bool show_default = true;  // in --help
  ResumeRule resume = ResumeRule::must_match;
};

// Adds each row of a table to a CLI11 (sub)command, bound to its field.
struct CliRows {
  CLI::App& app;

  template <class T>
  void option(const std::string& name, T& field, const std::string& help, Extra extra = {}) {
    CLI::Option* o = nullptr;
    if constexpr (kWords<T>) {
      std::vector<std::string> allowed;
      for (const auto& [word, v] : words(T{})) allowed.push_back(word);
      o = app.add_option_function<std::string>(
          name,
          [&field](const std::string& word) {
            for (const auto& [w, v] : words(T{}))
              if (w == word) field = v;
          },
          help);
      o->check(CLI::IsMember(allowed));
      if (extra.show_default) o->default_str(word_of(field));
    } else if constexpr (std::is_same_v<T, Noise>) {  // parsed once, here
      o = app.add_option_function<std::string>(
          name, [&field](const std::string& text) { field = parse_noise(text); }, help);
      if (extra.show_default) o->default_str(noise_text(field));
    } else {
      o = app.add_option(name, field, help);
      if constexpr (std::is_arithmetic_v<T>) {
        if (extra.show_default) o->capture_default_str();
      } else if (extra.show_default && !field.empty()) {  // strings and lists
        o->capture_default_str();
      }
    }
    if constexpr (std::is_same_v<T, std::vector<int64_t>>) o->delimiter(',');
    if (extra.check) o->check(*extra.check);
  }

  // A size in bytes, written with or without a unit: 4096, 512MiB, 2GiB, 1.5G, 100MB.
  void size(const std::string& name, int64_t& field, const std::string& help, Extra = {}) {
    app.add_option_function<std::string>(
           name, [&field](const std::string& text) { field = *parse_size(text); }, help)
        ->check(CLI::Validator(
            [](std::string& text) -> std::string {
              return parse_size(text) ? "" : "'" + text + "' is not a size such as 512MiB or 2GiB";
            },
            "SIZE"));
  }

  void flag(const std::string& name, bool& field, const std::string& help, Stored = Stored::never,
            ResumeRule = ResumeRule::free) {
    app.add_flag(name, field, help);
  }
};

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

// A field's value as the stored configuration writes it (TOML).
template <class T>
std::string toml_value(const T& field) {
  if constexpr (kWords<T>) {
    return toml_string(word_of(field));
  } else if constexpr (std::is_same_v<T, std::string>) {
    return toml_string(field);
  } else if constexpr (std::is_same_v<T, Noise>) {
    return toml_string(noise_text(field));
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>> ||
                       std::is_same_v<T, std::vector<std::string>>) {
    std::string value;
    for (const auto& x : field) {
      if constexpr (std::is_same_v<T, std::vector<int64_t>>)
        value += (value.empty() ? "" : ", ") + std::to_string(x);
      else
        value += (value.empty() ? "" : ", ") + toml_string(x);
    }
    return "[" + value + "]";
  } else if constexpr (std::is_floating_point_v<T>) {
    return number(field);
  } else {
    return std::to_string(field);
  }
}

// A field's value as a person types it on the command line (a long list shortened).
template <class T>
std::string shown_value(const T& field) {
  if constexpr (kWords<T>) {
    return word_of(field);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return field.empty() ? "''" : field;
  } else if constexpr (std::is_same_v<T, Noise>) {
    return noise_text(field);
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    std::string value;
    for (int64_t x : field) value += (value.empty() ? "" : ",") + std::to_string(x);
    return value;
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    return field.empty() ? "(none)" : name_of_files(field[0], field.size());
  } else if constexpr (std::is_floating_point_v<T>) {
    return number(field);
  } else {
    return std::to_string(field);
  }
}

// Whether a field holds the value that means "not set" (empty, 0), which Stored::if_set leaves
// out of the stored configuration.
template <class T>
bool unset(const T& field) {
  if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::vector<int64_t>> ||
                std::is_same_v<T, std::vector<std::string>>)
    return field.empty();
  else if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>)
    return field == 0;
  else if constexpr (std::is_enum_v<T>)
    return field == T{};
  else
    return false;
}

// Writes each stored row of a table as a TOML `key = value` line.
struct TomlRows {
  std::ostringstream& out;

  template <class T>
  void option(const std::string& name, const T& field, const std::string&, Extra extra = {}) {
    if (extra.stored == Stored::never || (extra.stored == Stored::if_set && unset(field))) return;
    out << name.substr(2) << " = " << toml_value(field) << "\n";
  }

  void size(const std::string& name, const int64_t& field, const std::string& help,
            Extra extra = {}) {
    option(name, field, help, extra);
  }

  // Most flags steer one run (--resume, --quiet) and are not configuration.
  void flag(const std::string& name, const bool& field, const std::string&,
            Stored stored = Stored::never, ResumeRule = ResumeRule::free) {
    if (stored == Stored::always)
      out << name.substr(2) << " = " << (field ? "true" : "false") << "\n";
  }
};

// Each row's value and resume rule, for comparing two configurations.
struct ValueRows {
  struct Row {
    std::string name;
    ResumeRule rule;
    std::string text, shown;  // as stored, as typed
    bool unset;
  };
  std::vector<Row>& rows;

  template <class T>
  void option(const std::string& name, const T& field, const std::string&, Extra extra = {}) {
    rows.push_back({name, extra.resume, toml_value(field), shown_value(field), unset(field)});
  }

  void size(const std::string& name, const int64_t& field, const std::string& help,
            Extra extra = {}) {
    option(name, field, help, extra);
  }

  void flag(const std::string& name, const bool& field, const std::string&, Stored = Stored::never,
            ResumeRule rule = ResumeRule::free) {
    rows.push_back({name, rule, field ? "true" : "false", field ? "on" : "off", false});
  }
};

// The count transform's options (transform.hpp), for train and pca: they describe the model.
template <class Rows, class Counts>
void count_rows(Rows& t, Counts& c) {
  t.option("--size-factor", c.size_factor,
           "scale each row (a cell's counts) to this total over all its columns, before "
           "--transform; stored with the model (0: as stored)",
           {.check = number_in(0, kHuge, "[0, inf)"),
            .stored = Stored::if_set,
            .resume = ResumeRule::model});
  t.option("--transform", c.scale,
           "log1p: log(1 + x) of each value, after --size-factor; stored with the model",
           {.stored = Stored::if_set, .resume = ResumeRule::model});
  t.option("--features", c.features,
           "the columns to keep, after --size-factor and --transform: var:COLUMN (a boolean "
           "column of the AnnData var, e.g. var:highly_variable) or @FILE (names or ids, one a "
           "line); stored with the model",
           {.check = features_spec(), .stored = Stored::if_set, .resume = ResumeRule::model});
}

// The train options: the one table of them. The command line, --config files and the
// effective configuration that checkpoints store (to_toml) all come from it, so a new option
// is its field in config.hpp and one row here.
template <class Rows, class Config>
void train_rows(Rows& t, Config& c) {
  t.option("--data", c.data.files,
           "HDF5 file(s) with the training data, their rows concatenated: paths, quoted globs "
           "('runs/*.h5', sorted by name) or @list.txt (a path a line) (required)");
  t.option("--dataset", c.data.dataset, "2-D dataset in it (rows are samples)",
           {.check = dataset_path("/train")});
  t.option("--layers", c.model.encoder_widths,
           "encoder widths after the input, the last is the code width (e.g. 512,128,32); the "
           "decoder mirrors them (required)",
           {.check = integer_from(1), .resume = ResumeRule::model});
  t.option("--activation", c.model.activation, "hidden layers' activation",
           {.resume = ResumeRule::model});
  t.option("--code-activation", c.model.code_activation, "the code layer's (default: --activation)",
           {.show_default = false, .resume = ResumeRule::model});
  t.option("--output-activation", c.model.output_activation,
           "the reconstruction's activation (default: sigmoid; linear with --normalize standard)",
           {.show_default = false, .resume = ResumeRule::model});
  count_rows(t, c.counts);
  t.option("--normalize", c.normalize,
           "scale each column by statistics of the training rows, stored with the model: "
           "standard (mean 0, std 1), minmax (to [0, 1]) or none",
           {.resume = ResumeRule::model});
  t.option("--epochs", c.epochs, "train until this many epochs are complete",
           {.check = integer_from(1), .resume = ResumeRule::notice});
  t.option("--batch-size", c.global_batch, "GLOBAL batch size, split over the ranks",
           {.check = integer_from(1)});
  t.option("--lr", c.adam.learning_rate, "Adam's learning rate",
           {.check = number_in(0, kHuge, "(0, inf)"), .resume = ResumeRule::notice});
  t.option("--beta1", c.adam.beta1, "Adam's beta1", {.check = number_in(0, 1, "[0, 1)")});
  t.option("--beta2", c.adam.beta2, "Adam's beta2", {.check = number_in(0, 1, "[0, 1)")});
  t.option("--epsilon", c.adam.epsilon, "Adam's epsilon",
           {.check = number_in(0, kHuge, "(0, inf)")});
  t.option("--lr-schedule", c.schedule.kind,
           "the learning rate after warmup: constant, cosine (from --lr down to --min-lr over "
           "the run's remaining steps) or step (times --lr-gamma every --lr-step-epochs epochs)");
  t.option("--warmup-steps", c.schedule.warmup_steps,
           "steps over which the learning rate rises linearly to --lr (step t: lr * t / W)",
           {.check = integer_from(0)});
  t.option("--min-lr", c.schedule.min_lr, "where the cosine schedule ends",
           {.check = number_in(0, kHuge, "[0, inf)")});
  t.option("--lr-step-epochs", c.schedule.step_epochs,
           "the step schedule: epochs between multiplications by --lr-gamma",
           {.check = integer_from(1)});
  t.option("--lr-gamma", c.schedule.gamma, "the step schedule's factor",
           {.check = number_in(0, kHuge, "(0, inf)")});
  t.option("--weight-decay", c.weight_decay,
           "decoupled weight decay as torch.optim.AdamW applies it (p -= lr * L * p before each "
           "Adam step), on kernels only, never on biases",
           {.check = number_in(0, kHuge, "[0, inf)")});
  t.option("--clip-norm", c.clip_norm,
           "scale the averaged gradient by min(1, C / (norm + 1e-6)), norm its L2 norm over all "
           "parameters (torch.nn.utils.clip_grad_norm_); 0: off",
           {.check = number_in(0, kHuge, "[0, inf)")});
  t.option("--early-stop", c.early_stop,
           "stop when val_loss has not improved by --min-delta for this many epochs, keeping the "
           "best model as CHECKPOINT.best (needs validation data and --checkpoint); 0: never",
           {.check = integer_from(0)});
  t.option("--min-delta", c.min_delta,
           "what --early-stop counts as better: a val_loss below the best by more than this",
           {.check = number_in(0, kHuge, "[0, inf)")});
  t.option("--noise", c.noise,
           "denoising: corrupt each training row's input, the target staying clean: "
           "gaussian:SIGMA adds normal noise of deviation SIGMA, mask:P zeroes each value with "
           "probability P (after --normalize; a row's noise depends on the seed, the epoch and "
           "the row alone); never in validation or encode",
           {.check = noise_spec()});
  t.flag("--deterministic", c.deterministic,
         "bit-identical weights, moments and losses on any number of ranks (up to the batch's "
         "sample blocks) and threads: fixed-shape blocks of the batch, their gradients summed "
         "exactly in fixed point",
         Stored::always, ResumeRule::must_match);
  t.option("--alpha", c.alpha,
           "weight of the encode loss mean((code - input)^2); needs code width = input width",
           {.check = number_in(0, 1, "[0, 1]")});
  t.option("--seed", c.seed, "seed of the initial weights and the batch order");
  t.option("--shuffle", c.shuffle, "shuffle the batches every epoch (on) or not (off)");
  t.option("--threads", c.threads,
           "threads per rank (default: OMP_NUM_THREADS, SLURM_CPUS_PER_TASK, or the cores per "
           "rank)",
           {.check = integer_from(1),
            .stored = Stored::if_set,
            .show_default = false,
            .resume = ResumeRule::free});
  t.option("--val-data", c.val.files,
           "HDF5 file(s) with validation data, as --data (default: --data)",
           {.stored = Stored::if_set, .resume = ResumeRule::notice});
  t.option("--val-dataset", c.val.dataset, "validation dataset (default: --dataset)",
           {.check = dataset_path("/train"),
            .stored = Stored::if_set,
            .show_default = false,
            .resume = ResumeRule::notice});
  t.option("--data-block-rows", c.data_block_rows,
           "rows per block, the unit of reading (default: whole chunks of the first file, about "
           "4 MiB; else about 4 MiB of rows); with --window-rows it decides the batches",
           {.check = integer_from(1),
            .stored = Stored::if_set,
            .show_default = false,
            .resume = ResumeRule::kept});
  t.option("--window-rows", c.window_rows,
           "the most rows a window holds (default: all rows when they take at most 2 GiB as "
           "float32, else the data in equal windows of about 2 GiB); with --data-block-rows, "
           "the seed and the batch it decides the batches",
           {.check = integer_from(1),
            .stored = Stored::if_set,
            .show_default = false,
            .resume = ResumeRule::kept});
  t.size("--data-memory", c.data_memory,
         "the most memory per rank the training rows may take, e.g. 512MiB or 2GiB (default: "
         "half of the node's memory over the ranks on it); a ceiling only: it never changes "
         "the batches, and a layout that needs more is refused",
         {.stored = Stored::if_set, .resume = ResumeRule::free});
  t.option("--checkpoint", c.checkpoint, "checkpoint file to write (and to --resume)",
           {.stored = Stored::if_set, .resume = ResumeRule::free});
  t.option("--checkpoint-every", c.checkpoint_every,
           "steps between checkpoints; 0: only at the end",
           {.check = integer_from(0), .resume = ResumeRule::free});
  t.option("--keep", c.keep,
           "checkpoints to keep: the newest at --checkpoint, older ones as CHECKPOINT.step<N>",
           {.check = integer_from(1), .resume = ResumeRule::free});
  t.option("--check-replicas", c.check_replicas,
           "steps between checks that every rank holds the same weights; 0: never",
           {.check = integer_from(0), .resume = ResumeRule::free});
  t.flag("--resume", c.resume, "continue from --checkpoint if it exists");
  t.flag("--overwrite", c.overwrite,
         "start a new run although --checkpoint exists: its checkpoints, .best and --metrics "
         "replace the old run's");
  t.option("--init-from", c.init_from,
           "start from this checkpoint's weights (fresh optimizer and data cursor)",
           {.stored = Stored::if_set, .resume = ResumeRule::free});
  t.option("--metrics", c.metrics, "write JSON Lines metrics to this file",
           {.stored = Stored::if_set, .resume = ResumeRule::free});
  t.option("--log-every", c.log_every, "steps between step lines; 0: one line per epoch",
           {.check = integer_from(0), .resume = ResumeRule::free});
  t.flag("--quiet", c.quiet, "no progress output (errors and warnings still print)");
}

// Options every block-reading command shares.
template <class Rows>
void block_rows(Rows& t, DataSource& data, int64_t& block_rows, int& threads) {
  t.option("--data", data.files,
           "HDF5 file(s) with the rows, concatenated: paths, quoted globs or @list.txt (required)");
  t.option("--dataset", data.dataset, "2-D dataset in it", {.check = dataset_path("/train")});
  t.option("--block-rows", block_rows, "rows each rank holds at once", {.check = integer_from(1)});
  t.option("--threads", threads, "threads per rank (default as for train)",
           {.check = integer_from(1), .show_default = false});
}

template <class Rows>
void encode_rows(Rows& t, EncodeConfig& c) {
  t.option("--model", c.model, "checkpoint or PCA model file (required)");
  block_rows(t, c.data, c.block_rows, c.threads);
  t.option("--out", c.out,
           "HDF5 file for the codes, new or existing; FILE.h5ad: an AnnData file of the input's "
           "cells with the codes in obsm (required)");
  t.option("--out-dataset", c.out_dataset, "dataset for the codes (not for an .h5ad --out)",
           {.check = dataset_path("/codes")});
  t.option("--obsm-key", c.obsm_key, "the codes' key in an .h5ad --out's obsm",
           {.check = obsm_key()});
  t.flag("--overwrite", c.overwrite, "replace an existing output dataset");
}

template <class Rows>
void evaluate_rows(Rows& t, EvaluateConfig& c) {
  t.option("--model", c.model, "checkpoint or PCA model file (required)");
  block_rows(t, c.data, c.block_rows, c.threads);
  t.option("--per-sample", c.per_sample, "HDF5 file for each row's reconstruction error");
  t.option("--per-sample-dataset", c.per_sample_dataset, "dataset for them",
           {.check = dataset_path("/per_sample_mse")});
  t.option("--reconstruct", c.reconstruct, "HDF5 file for the reconstructions");
  t.option("--reconstruct-dataset", c.reconstruct_dataset, "dataset for them",
           {.check = dataset_path("/reconstruction")});
  t.flag("--overwrite", c.overwrite, "replace existing output datasets");
}

template <class Rows>
void pca_rows(Rows& t, PcaConfig& c) {
  block_rows(t, c.data, c.block_rows, c.threads);
  count_rows(t, c.counts);
  t.option("--normalize", c.normalize,
           "fit the PCA to the columns scaled as train --normalize does: standard, minmax or "
           "none; stored with the model");
  t.option("--components", c.components, "principal components to keep (required)",
           {.check = integer_from(1), .show_default = false});
  t.option("--out", c.out, "model file to write (required)");
  t.flag("--overwrite", c.overwrite, "replace an existing model file at --out");
}

template <class Rows>
void inspect_rows(Rows& t, InspectConfig& c) {
  t.option("path", c.path, "checkpoint or model file (required)");
  t.flag("--json", c.json, "one JSON object, for scripts");
}

// Settles what train's options imply for each other; `given` tells which ones the command line
// or the --config file set.
template <class Given>
void finish(TrainConfig& c, Given given) {
  c.default_code = !given("--code-activation");
  if (c.default_code) c.model.code_activation = c.model.activation;
  // A sigmoid cannot produce standardized values.
  c.default_output = !given("--output-activation");
  if (c.default_output)
    c.model.output_activation =
        c.normalize == NormalizeKind::standard ? Activation::linear : Activation::sigmoid;
  // Validation data: --val-dataset alone means the training file; --val-data alone, the same
  // dataset; neither, none.
  if (given("--val-dataset") && !given("--val-data")) c.val.files = c.data.files;
  if (given("--val-data") && !given("--val-dataset")) c.val.dataset = c.data.dataset;
  if (c.val.files.empty()) c.val.dataset.clear();
}

// Applies TOML `key = value` lines (read from `source`) to the options that nothing set yet.
// (CLI11 2.1 reads config files for the main app only, so subcommands do it here.)
void apply_toml(CLI::App& app, std::istream& in, const std::string& source) {
  CLI::ConfigTOML toml;
  for (const CLI::ConfigItem& item : toml.from_config(in)) {
    if (item.name == "++" || item.name == "--") continue;  // a [section] opens or closes
    if (!item.parents.empty() && item.parents != std::vector<std::string>{app.get_name()})
      throw CLI::ConfigError(source + ": unknown section [" + item.parents.front() + "]");
    CLI::Option* op = app.get_option_no_throw("--" + item.name);
    if (!op || item.name == "config")
      throw CLI::ConfigError(source + ": unknown key '" + item.name + "'");
    if (!op->empty()) continue;  // the command line wins
    if (op->get_expected_min() == 0)
      op->add_result(toml.to_flag(item));
    else
      op->add_result(item.inputs);
    op->run_callback();  // converts and validates like a flag
  }
}

// Applies a TOML file to the options not given on the command line.
void apply_config_file(CLI::App& app, const std::string& path) {
  std::ifstream in(path);
  if (!std::filesystem::is_regular_file(path) || !in) throw CLI::FileError::Missing(path);
  apply_toml(app, in, path);
}

}  // namespace

Command parse_command_line(int argc, const char* const* argv) {
  CLI::App app{"aetrain: data-parallel autoencoders on HDF5 data (run under mpirun -n P)"};
  app.require_subcommand(1, 1);
  app.set_version_flag("--version", version_text);
  // Every subcommand's options, bound to CLI11's rows; the one chosen becomes the Command.
  struct {
    TrainConfig train;
    EncodeConfig encode;
    EvaluateConfig evaluate;
    PcaConfig pca;
    InspectConfig inspect;
  } cmd;
  std::string config_file;
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
    return CliRows{*sub};
  };
  CliRows train = add("train", "train an autoencoder", {"--data", "--layers"});
  train_rows(train, cmd.train);
  CliRows encode = add("encode", "write the code of every row", {"--model", "--data", "--out"});
  encode_rows(encode, cmd.encode);
  CliRows evaluate =
      add("evaluate", "print the reconstruction error {\"mse\", \"rows\"}", {"--model", "--data"});
  evaluate_rows(evaluate, cmd.evaluate);
  CliRows pca = add("pca", "fit an exact PCA, usable as a model by encode and evaluate",
                    {"--data", "--components", "--out"});
  pca_rows(pca, cmd.pca);
  CliRows inspect = add("inspect", "show what a checkpoint or model file holds", {"path"});
  inspect_rows(inspect, cmd.inspect);

  CLI::App* chosen = nullptr;
  try {
    app.parse(argc, argv);
    for (Sub& sub : subs) {
      if (!sub.app->parsed()) continue;
      chosen = sub.app;
      config_file = sub.config_file;
      if (!sub.config_file.empty()) apply_config_file(*sub.app, sub.config_file);
      for (const std::string& name : sub.required)
        if (sub.app->get_option(name)->empty())
          fail_replicated(ExitCode::usage,
                          name + " is required (on the command line or in --config)");
    }
  } catch (const CLI::CallForHelp& e) {
    std::ostringstream out, err;
    app.exit(e, out, err);
    throw HelpRequested(out.str());
  } catch (const CLI::CallForVersion& e) {
    throw HelpRequested(e.what() + std::string("\n"));
  } catch (const CLI::Error& e) {
    // Every rank parses the same argv (and reads the same --config file), so every rank fails
    // alike.
    for (Sub& sub : subs)
      if (sub.app->parsed()) chosen = sub.app;
    fail_replicated(ExitCode::usage, std::string(e.what()) + " (see aetrain " +
                                         (chosen ? chosen->get_name() + " " : std::string()) +
                                         "--help)");
  }
  const std::string name = chosen->get_name();
  const auto with_file = [&](auto options) -> Command {
    options.config_file = config_file;
    return options;
  };
  if (name == "train") {
    finish(cmd.train, [&](const char* option) { return train.app.count(option) > 0; });
    return with_file(std::move(cmd.train));
  }
  if (name == "encode") {
    EncodeConfig& c = cmd.encode;
    if (c.out.ends_with(".h5ad")) {
      if (encode.app.count("--out-dataset") > 0)
        fail_replicated(ExitCode::usage,
                        "--out-dataset is for HDF5 outputs; " + c.out +
                            " is an AnnData file, whose codes go to obsm: name them with "
                            "--obsm-key (see aetrain encode --help)");
      c.out_dataset = "/obsm/" + c.obsm_key;
    } else if (encode.app.count("--obsm-key") > 0) {
      fail_replicated(ExitCode::usage, "--obsm-key is for an .h5ad --out; " + c.out +
                                           " is an HDF5 file: name the dataset with --out-dataset");
    }
    return with_file(std::move(c));
  }
  if (name == "evaluate") return with_file(std::move(cmd.evaluate));
  if (name == "pca") return with_file(std::move(cmd.pca));
  return cmd.inspect;
}

TrainConfig train_config_from_toml(const std::string& text) {
  CLI::App app{"the stored configuration", "train"};
  TrainConfig c;
  CliRows rows{app};
  train_rows(rows, c);
  std::istringstream in(text);
  try {
    apply_toml(app, in, "the stored configuration");
  } catch (const CLI::Error& e) {
    throw std::invalid_argument(e.what());
  }
  finish(c, [&](const char* name) { return app.count(name) > 0; });
  return c;
}

std::vector<OptionChange> changed_options(const TrainConfig& stored, const TrainConfig& now) {
  std::vector<ValueRows::Row> a, b;
  ValueRows was{a}, is{b};
  train_rows(was, stored);
  train_rows(is, now);
  std::vector<OptionChange> out;
  for (size_t i = 0; i < a.size(); ++i) {
    const ResumeRule rule = a[i].rule;
    if (rule == ResumeRule::free || (rule == ResumeRule::kept && b[i].unset) ||
        a[i].text == b[i].text)
      continue;
    out.push_back({a[i].name, rule, a[i].shown, b[i].shown});
  }
  return out;
}

std::string to_toml(const TrainConfig& c) {
  std::ostringstream out;
  TomlRows rows{out};
  train_rows(rows, c);
  return out.str();
}

}  // namespace aetrain
