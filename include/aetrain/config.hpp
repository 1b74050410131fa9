// Plain option structs, and the lists of their fields that files and JSON follow. No
// behaviour lives here.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace aetrain {

enum class Activation { relu, sigmoid, tanh, linear };

/// How the model scales each input column (normalization.hpp): not at all, to mean 0 and
/// standard deviation 1, or to [0, 1].
enum class NormalizeKind { none, standard, minmax };

/// What --transform does to each value of count data: nothing, or log(1 + x).
enum class CountScale { none, log1p };

/// What count data goes through before the model (and --normalize) sees it (transform.hpp):
/// each row scaled to `size_factor` in total, the values log1p'd, the columns `features` names
/// kept. Stored with the model.
struct CountTransform {
  double size_factor = 0;  // 0: rows as stored
  CountScale scale = CountScale::none;
  std::string features;  // "" (every column), "var:COLUMN" or "@FILE"
  bool operator==(const CountTransform&) const = default;
};

/// The architecture: input width, encoder widths down to the code, mirrored decoder.
struct ModelConfig {
  int64_t input_dim = 0;
  std::vector<int64_t> encoder_widths;  // the last one is the code width
  Activation activation = Activation::relu;
  Activation code_activation = Activation::relu;
  Activation output_activation = Activation::sigmoid;
  bool operator==(const ModelConfig&) const = default;
};

/// The architecture's fields by name: the one list that the checkpoint's /model attributes and
/// every JSON description of a model follow. Calls f(name, field) for each; M is ModelConfig,
/// const or not.
template <class M, class F>
void model_fields(M& m, F&& f) {
  f("input_dim", m.input_dim);
  f("encoder_widths", m.encoder_widths);
  f("activation", m.activation);
  f("code_activation", m.code_activation);
  f("output_activation", m.output_activation);
}

/// Adam's hyperparameters (Keras' defaults).
struct AdamConfig {
  double learning_rate = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-7;
  bool operator==(const AdamConfig&) const = default;
};

/// Adam's hyperparameters by name (the checkpoint's /optimizer attributes), as model_fields.
template <class A, class F>
void adam_fields(A& a, F&& f) {
  f("learning_rate", a.learning_rate);
  f("beta1", a.beta1);
  f("beta2", a.beta2);
  f("epsilon", a.epsilon);
}

/// How the learning rate moves over a run (schedule.hpp).
enum class LrSchedule { constant, cosine, step };

/// Each enum's names, one table per enum: the command line, TOML, checkpoints, JSON and
/// messages all spell its values from here, in this order.
template <class E>
struct EnumNames;
template <>
struct EnumNames<Activation> {
  static constexpr const char* what = "activation";
  static constexpr std::array<std::pair<Activation, const char*>, 4> table{
      {{Activation::relu, "relu"},
       {Activation::sigmoid, "sigmoid"},
       {Activation::tanh, "tanh"},
       {Activation::linear, "linear"}}};
};
template <>
struct EnumNames<NormalizeKind> {
  static constexpr const char* what = "normalization";
  static constexpr std::array<std::pair<NormalizeKind, const char*>, 3> table{
      {{NormalizeKind::none, "none"},
       {NormalizeKind::standard, "standard"},
       {NormalizeKind::minmax, "minmax"}}};
};
template <>
struct EnumNames<CountScale> {
  static constexpr const char* what = "transform";
  static constexpr std::array<std::pair<CountScale, const char*>, 2> table{
      {{CountScale::none, "none"}, {CountScale::log1p, "log1p"}}};
};
template <>
struct EnumNames<LrSchedule> {
  static constexpr const char* what = "learning-rate schedule";
  static constexpr std::array<std::pair<LrSchedule, const char*>, 3> table{
      {{LrSchedule::constant, "constant"},
       {LrSchedule::cosine, "cosine"},
       {LrSchedule::step, "step"}}};
};

/// The name of `value`.
template <class E>
constexpr const char* name_of(E value) {
  for (const auto& [v, name] : EnumNames<E>::table)
    if (v == value) return name;
  return "?";
}

/// Every name of E, "relu, sigmoid, tanh, linear".
template <class E>
std::string known_names() {
  std::string out;
  for (const auto& entry : EnumNames<E>::table)
    out += (out.empty() ? "" : ", ") + std::string(entry.second);
  return out;
}

/// The value named `name`; throws std::invalid_argument naming the known ones.
template <class E>
E from_name(const std::string& name) {
  for (const auto& [v, n] : EnumNames<E>::table)
    if (name == n) return v;
  throw std::invalid_argument("unknown " + std::string(EnumNames<E>::what) + " '" + name +
                              "' (known: " + known_names<E>() + ")");
}

/// What --noise asks for (noise.hpp): denoising, the model seeing corrupted rows.
struct Noise {
  enum class Kind { none, gaussian, mask };
  Kind kind = Kind::none;
  double amount = 0;  // gaussian: the standard deviation; mask: the probability of a zero
  bool operator==(const Noise&) const = default;
};

/// The learning-rate schedule: warmup, then constant, cosine or step decay.
struct ScheduleConfig {
  LrSchedule kind = LrSchedule::constant;
  int64_t warmup_steps = 0;
  double min_lr = 0.0;      // where cosine ends
  int64_t step_epochs = 1;  // step: epochs between multiplications by gamma
  double gamma = 0.1;
  bool operator==(const ScheduleConfig&) const = default;
};

/// A 2-D dataset in one or more HDF5 files (their rows concatenated); rows are samples.
struct DataSource {
  std::vector<std::string> files;  // as given: paths, quoted globs, @lists (sources.hpp)
  std::string dataset = "/train";
  bool operator==(const DataSource&) const = default;
};

/// Everything `aetrain train` needs.
struct TrainConfig {
  DataSource data;
  DataSource val;  // val.files empty: no validation
  ModelConfig model;
  AdamConfig adam;
  ScheduleConfig schedule;
  double weight_decay = 0.0;   // decoupled (AdamW), on kernels only
  double clip_norm = 0.0;      // the averaged gradient's L2 norm at most this; 0: no clipping
  int64_t early_stop = 0;      // epochs without a better val_loss before stopping; 0: never
  double min_delta = 0.0;      // what counts as better: below the best by more than this
  Noise noise;                 // denoising: none, gaussian:SIGMA or mask:P
  bool deterministic = false;  // order-invariant gradient sums over fixed sample blocks
  // Fitted on the training rows (or taken from --resume's or --init-from's file). The command
  // line makes the output linear by default with `standard`; `default_output` says it chose.
  CountTransform counts;  // applied before the normalization
  NormalizeKind normalize = NormalizeKind::none;
  bool default_output = false;
  bool default_code = false;  // the code activation is --activation's, not given
  double alpha = 0.0;         // weight of the encode loss mean((h - x)^2)
  int64_t epochs = 1;
  int64_t global_batch = 10;  // split over the ranks
  uint64_t seed = 0;
  bool shuffle = true;
  int threads = 0;  // 0: choose (see runtime.hpp)
  // The data layout (training_data.hpp): 0 chooses (from the chunks; from the budget).
  int64_t data_block_rows = 0;
  int64_t window_rows = 0;
  int64_t data_memory = 0;  // bytes per rank for the training rows; 0: from the node's memory
  std::string checkpoint;
  int64_t checkpoint_every = 0;  // steps; 0: only at the end
  int64_t keep = 1;            // checkpoints kept: the newest at `checkpoint`, older ones beside it
  int64_t check_replicas = 0;  // steps between replica checksums; 0: never
  bool resume = false;
  bool overwrite = false;  // a new run over an existing --checkpoint and --metrics
  std::string init_from;
  std::string metrics;
  int64_t log_every = 0;  // steps; 0: one line per epoch
  bool quiet = false;
  std::string config_file;  // the --config file the options came from (read, never written)
  bool operator==(const TrainConfig&) const = default;
};

/// `aetrain encode`: the code of every row, in input order.
struct EncodeConfig {
  std::string model;  // a checkpoint or a PCA model file
  DataSource data;
  std::string out, out_dataset = "/codes";  // an .h5ad out: "/obsm/" + obsm_key
  std::string obsm_key = "X_aetrain";
  int64_t block_rows = 4096;  // rows per rank held at once
  bool overwrite = false;
  int threads = 0;
  std::string config_file;  // the --config file the options came from
};

/// `aetrain evaluate`: the reconstruction error, overall and per row.
struct EvaluateConfig {
  std::string model;
  DataSource data;
  std::string per_sample, per_sample_dataset = "/per_sample_mse";
  std::string reconstruct, reconstruct_dataset = "/reconstruction";
  int64_t block_rows = 4096;
  bool overwrite = false;
  int threads = 0;
  std::string config_file;  // the --config file the options came from
};

/// `aetrain pca`: an exact PCA of a dataset, written as a model file.
struct PcaConfig {
  DataSource data;
  CountTransform counts;
  NormalizeKind normalize = NormalizeKind::none;
  int64_t components = 0;
  std::string out;
  bool overwrite = false;  // replace an existing model file at `out`
  int64_t block_rows = 4096;
  int threads = 0;
  std::string config_file;  // the --config file the options came from
};

/// `aetrain inspect`: what a checkpoint or model file holds.
struct InspectConfig {
  std::string path;
  bool json = false;
};

}  // namespace aetrain
