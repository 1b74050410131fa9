#include "aetrain/checkpoint.hpp"

#include <algorithm>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "aetrain/fault.hpp"
#include "aetrain/outputs.hpp"
#include "aetrain/h5.hpp"
#include "aetrain/layers.hpp"
#include "aetrain/model.hpp"

namespace aetrain {
namespace {

constexpr const char* kCheckpoint = kCheckpointFormat;
constexpr const char* kPca = kPcaFormat;

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(ExitCode::checkpoint, path + ": " + what);
}

// A field as the checkpoint stores it (and JSON shows it): enums by name, the seed as int64.
std::string stored(Activation a) { return activation_name(a); }
int64_t stored(uint64_t v) { return int64_t(v); }
template <class T>
const T& stored(const T& v) {
  return v;
}

// Writes each field of a list (model_fields, adam_fields, train_state_fields) as an attribute.
struct AttributeWriter {
  const h5::Handle& obj;
  template <class T>
  void operator()(const char* name, const T& value) const {
    h5::write_attribute(obj, name, stored(value));
  }
};

// Reads each field of a list back from its attribute. A field that a file of an older format
// lacks (one added since) keeps its default.
struct AttributeReader {
  const h5::Handle& obj;
  bool older = false;  // the file's format is older than this aetrain's
  template <class T>
  void operator()(const char* name, T& v) const {
    if (older && !h5::has_attribute(obj, name)) return;
    read(name, v);
  }
  void read(const char* name, int64_t& v) const { v = h5::read_int_attribute(obj, name); }
  void read(const char* name, uint64_t& v) const {
    v = uint64_t(h5::read_int_attribute(obj, name));
  }
  void read(const char* name, double& v) const { v = h5::read_double_attribute(obj, name); }
  void read(const char* name, std::string& v) const { v = h5::read_string_attribute(obj, name); }
  void read(const char* name, std::vector<int64_t>& v) const {
    v = h5::read_int_array_attribute(obj, name);
  }
  void read(const char* name, Activation& v) const {
    v = activation_from_name(h5::read_string_attribute(obj, name));
  }
};

// Adds each field of a list to a JSON object.
struct JsonWriter {
  Json& json;
  template <class T>
  void operator()(const char* name, const T& value) const {
    json.add(name, stored(value));
  }
};

std::string layer_group(const LayerShape& l) {
  return std::string(l.decoder ? "decoder" : "encoder") + "/layer_" + std::to_string(l.index);
}

// Writes one tree (/model, /optimizer/m or /optimizer/v) of per-layer kernels and biases.
void write_tree(const h5::Handle& root, const std::vector<LayerShape>& layers,
                std::span<const float> flat) {
  h5::Handle enc = h5::create_group(root, "encoder");
  h5::Handle dec = h5::create_group(root, "decoder");
  for (const LayerShape& l : layers) {
    h5::Handle g = h5::create_group(l.decoder ? dec : enc, "layer_" + std::to_string(l.index));
    h5::write_dataset(g, "kernel", {l.in, l.out}, flat.data() + l.kernel_offset);
    h5::write_dataset(g, "bias", {l.out}, flat.data() + l.bias_offset);
  }
}

std::vector<float> read_tree(const std::string& path, const h5::Handle& file,
                             const std::string& root, const ModelConfig& model) {
  const std::vector<LayerShape> layers = layer_shapes(model);
  std::vector<float> flat(size_t(parameter_count(model)));
  for (const LayerShape& l : layers) {
    const std::string g = root + "/" + layer_group(l);
    for (auto [name, dims, offset] : {std::tuple{"/kernel", std::vector<int64_t>{l.in, l.out},
                                                 l.kernel_offset},
                                      std::tuple{"/bias", std::vector<int64_t>{l.out},
                                                 l.bias_offset}}) {
      std::vector<float> values;
      try {
        values = h5::read_dataset(file, g + name, dims);
      } catch (const h5::Failure& e) {
        bad(path, std::string(e.what()) + " (this architecture needs " + g + name + " of shape " +
                      (dims.size() == 2 ? std::to_string(dims[0]) + "x" + std::to_string(dims[1])
                                        : std::to_string(dims[0])) +
                      ")");
      }
      if (!std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); }))
        bad(path, g + name + " holds NaN or infinite values");
      std::copy(values.begin(), values.end(), flat.begin() + offset);
    }
  }
  return flat;
}

// Keeps the checkpoint at `path` (about to be replaced) as path.step<N>, and only the newest
// keep - 1 such files: a hard link, so the checkpoint at `path` never goes missing. Only files
// that are aetrain training checkpoints are replaced or pruned.
void keep_previous(const std::string& path, int64_t keep) {
  namespace fs = std::filesystem;
  if (keep <= 1 || !fs::exists(path)) return;
  int64_t step = 0;
  try {
    step = h5::read_int_attribute(h5::open_group(h5::open_file(path), "/train"), "global_step");
  } catch (const h5::Failure&) {
    return;  // not ours to keep
  }
  const std::string kept = path + ".step" + std::to_string(step);
  std::error_code ec;
  if (!fs::exists(kept) || holds(kept, FileKind::checkpoint)) {
    fs::remove(kept, ec);
    fs::create_hard_link(path, kept, ec);
    if (ec) fs::copy_file(path, kept, ec);  // file systems without hard links
  }
  const fs::path dir = fs::absolute(path).parent_path();
  const std::string prefix = fs::path(path).filename().string() + ".step";
  std::vector<std::pair<int64_t, fs::path>> old;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") == std::string::npos &&
        holds(e.path().string(), FileKind::checkpoint))
      old.emplace_back(std::stoll(digits), e.path());
  }
  std::sort(old.begin(), old.end());
  for (size_t i = 0; i + size_t(keep - 1) < old.size(); ++i) fs::remove(old[i].second, ec);
}

// Builds the file in memory (`fill` writes into it), writes its bytes as path + ".tmp", syncs
// it and renames it over `path`: a crash at any moment leaves the old file or the new one, and a
// failed write (a full disk) the old one and no .tmp. Building in memory first means that a
// failed write is a plain system call's, never HDF5's (whose file close fails on a full disk).
// `name` is the file's name in messages ("checkpoint") and `point` its fault points' prefix:
// POINT-tmp-created, POINT-mid-write, POINT-before-rename, POINT-after-rename. Throws
// Error(write_failed) naming the path and the system's reason.
template <class Fill>
void write_atomically(const std::string& path, const std::string& format, const std::string& name,
                      const std::string& point, Fill fill, int64_t keep = 1) {
  const std::string tmp = path + ".tmp";
  const bool replacing = std::filesystem::exists(path);
  const auto failed = [&](const std::string& why) {
    throw Error(ExitCode::write_failed,
                path + ": cannot write the " + name + ": " + why +
                    (replacing ? " (the previous " + name + " is kept)" : ""));
  };
  std::optional<h5::MemoryFile> memory;
  std::string_view image;
  try {
    memory.emplace();
    {
      const h5::Handle& file = memory->file();
      h5::Handle root = h5::open_group(file, "/");
      h5::write_attribute(root, "format", format);
      h5::write_attribute(root, "format_version", kCheckpointFormatVersion);
      h5::write_attribute(root, "created_by", std::string("aetrain ") + AETRAIN_VERSION);
      fill(file);
    }
    image = memory->close();
  } catch (const h5::Failure& e) {
    failed(e.reason());
  }
  try {
    write_new_file(tmp, image, [&](size_t written) {
      if (written == 0 && fault(point + "-tmp-created")) std::raise(SIGKILL);
      if (written > 0 && written < image.size() && fault(point + "-mid-write")) std::raise(SIGKILL);
    });
    memory.reset();
    publish_file(tmp, path, [&] {
      if (fault(point + "-before-rename")) std::raise(SIGKILL);
      keep_previous(path, keep);
    });
  } catch (const WriteFailure& e) {
    failed(e.what());
  }
  if (fault(point + "-after-rename")) std::raise(SIGKILL);
}

void write_model(const h5::Handle& file, const ModelConfig& config, std::span<const float> params) {
  h5::Handle model = h5::create_group(file, "model");
  model_fields(config, AttributeWriter{model});
  write_tree(model, layer_shapes(config), params);
}

// The /normalization group (format version 2), only for a model that normalizes its input.
void write_normalization(const h5::Handle& file, const Normalization& norm) {
  if (norm.identity()) return;
  h5::Handle g = h5::create_group(file, "normalization");
  h5::write_attribute(g, "kind", std::string(normalize_name(norm.kind)));
  h5::write_attribute(g, "rows", norm.rows);
  const int64_t d = norm.offset.size();
  h5::write_dataset(g, "offset", {d}, norm.offset.data());
  h5::write_dataset(g, "scale", {d}, norm.scale.data());
}

Normalization read_normalization(const h5::Handle& file, int64_t input_dim) {
  Normalization norm;
  if (!h5::exists(file, "/normalization")) return norm;  // version 1, or none
  h5::Handle g = h5::open_group(file, "/normalization");
  norm.kind = normalize_from_name(h5::read_string_attribute(g, "kind"));
  if (norm.identity()) return norm;
  norm.rows = h5::read_int_attribute(g, "rows");
  norm.offset = Eigen::Map<Eigen::VectorXd>(
      h5::read_dataset_f64(g, "offset", {input_dim}).data(), input_dim);
  norm.scale = Eigen::Map<Eigen::VectorXd>(
      h5::read_dataset_f64(g, "scale", {input_dim}).data(), input_dim);
  try {
    validate(norm, input_dim);
  } catch (const std::invalid_argument& e) {
    throw h5::Failure(std::string("/normalization: ") + e.what());
  }
  return norm;
}

std::string read_bytes(const std::string& path) {
  if (!std::filesystem::exists(path)) bad(path, "no such file");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in && !in.eof()) bad(path, "cannot read");
  return bytes.str();
}

ModelConfig read_model_config(const h5::Handle& file) {
  ModelConfig m;
  model_fields(m, AttributeReader{h5::open_group(file, "/model")});
  validate(m);
  return m;
}

void read_training_state(const h5::Handle& file, int64_t version, CheckpointHeader& h) {
  h5::Handle opt = h5::open_group(file, "/optimizer");
  if (h5::read_string_attribute(opt, "name") != "adam")
    throw h5::Failure("the optimizer is not adam");
  adam_fields(h.adam, AttributeReader{opt});
  h.adam_step = h5::read_int_attribute(opt, "step");
  const h5::Handle train = h5::open_group(file, "/train");
  train_state_fields(h.train, AttributeReader{train, version < kCheckpointFormatVersion});
  h.train.sources = h5::exists(train, "sources")
                        ? h5::read_sources(train, "sources")
                        : std::vector<SourceEntry>{{h.train.data_file, h.train.dataset, 0, -1}};
}

PcaModel read_pca(const h5::Handle& file, const ModelConfig& model) {
  const int64_t d = model.input_dim, k = model.encoder_widths.back();
  h5::Handle g = h5::open_group(file, "/pca");
  PcaModel pca;
  pca.rows = h5::read_int_attribute(g, "rows");
  pca.total_variance = h5::read_double_attribute(g, "total_variance");
  pca.mean = Eigen::Map<Eigen::VectorXd>(h5::read_dataset_f64(g, "mean", {d}).data(), d);
  // Stored [k, d], one axis per row: byte for byte our column-major (d, k).
  pca.components =
      Eigen::Map<Eigen::MatrixXd>(h5::read_dataset_f64(g, "components", {k, d}).data(), d, k);
  pca.explained_variance =
      Eigen::Map<Eigen::VectorXd>(h5::read_dataset_f64(g, "explained_variance", {k}).data(), k);
  return pca;
}

// Parses a model file held in memory (HDF5's core driver over the bytes of the file).
Checkpoint parse(const std::string& path, const std::string& image) {
  static const std::string kSignature = "\x89HDF\r\n\x1a\n";
  if (image.compare(0, kSignature.size(), kSignature) != 0) bad(path, "not an HDF5 file");
  h5::Handle file;
  try {
    file = h5::open_image(image);
  } catch (const h5::Failure& e) {
    bad(path, std::string("damaged or truncated HDF5 file (") + e.what() + ")");
  }
  Checkpoint c;
  try {
    h5::Handle root = h5::open_group(file, "/");
    const std::string format =
        h5::has_attribute(root, "format") ? h5::read_string_attribute(root, "format") : "";
    if (format != kCheckpoint && format != kPca)
      bad(path, "not an aetrain checkpoint or model (no format = \"" + std::string(kCheckpoint) +
                    "\" attribute)");
    const int64_t version = h5::read_int_attribute(root, "format_version");
    if (version > kCheckpointFormatVersion)
      bad(path, "format version " + std::to_string(version) +
                    " is newer than this aetrain reads (" +
                    std::to_string(kCheckpointFormatVersion) + "); use a newer aetrain");
    if (version < 1) bad(path, "invalid format_version " + std::to_string(version));
    c.created_by = h5::has_attribute(root, "created_by")
                       ? h5::read_string_attribute(root, "created_by")
                       : "";
    c.header.model = read_model_config(file);
    c.header.normalization = read_normalization(file, c.header.model.input_dim);
    if (format == kCheckpoint) {
      // A model alone (weights from elsewhere, or written by hand) has no training state.
      for (const char* group : {"/optimizer", "/train"})
        if (!h5::exists(file, group))
          c.missing_state += (c.missing_state.empty() ? "" : " and ") + std::string(group);
      c.has_training_state = c.missing_state.empty();
      if (c.has_training_state) read_training_state(file, version, c.header);
    } else {
      c.kind = ModelKind::pca;
      c.pca = read_pca(file, c.header.model);
    }
  } catch (const h5::Failure& e) {
    bad(path, e.what());
  } catch (const std::invalid_argument& e) {
    bad(path, e.what());
  }
  c.params = read_tree(path, file, "/model", c.header.model);
  if (c.has_training_state) {
    c.m = read_tree(path, file, "/optimizer/m", c.header.model);
    c.v = read_tree(path, file, "/optimizer/v", c.header.model);
  }
  return c;
}

}  // namespace

const char* model_kind_name(ModelKind kind) {
  return kind == ModelKind::pca ? "pca" : "autoencoder";
}

Json to_json(const ModelConfig& model) {
  Json j;
  model_fields(model, JsonWriter{j});
  return j;
}

Json to_json(const AdamConfig& adam) {
  Json j;
  adam_fields(adam, JsonWriter{j});
  return j;
}

Json to_json(const TrainState& state) {
  Json j;
  train_state_fields(state, JsonWriter{j});
  return j;
}

void write_checkpoint(const std::string& path, const CheckpointHeader& h,
                      std::span<const float> params, std::span<const float> m,
                      std::span<const float> v, int64_t keep) {
  // CHECKPOINT.best is --early-stop's best model (Trainer::best_path), in messages too.
  const char* name = path.ends_with(".best") ? "best model" : "checkpoint";
  write_atomically(path, kCheckpoint, name, "checkpoint", [&](const h5::Handle& file) {
    write_model(file, h.model, params);
    write_normalization(file, h.normalization);
    const std::vector<LayerShape> layers = layer_shapes(h.model);
    h5::Handle opt = h5::create_group(file, "optimizer");
    h5::write_attribute(opt, "name", std::string("adam"));
    adam_fields(h.adam, AttributeWriter{opt});
    h5::write_attribute(opt, "step", h.adam_step);
    write_tree(h5::create_group(opt, "m"), layers, m);
    write_tree(h5::create_group(opt, "v"), layers, v);

    const h5::Handle train = h5::create_group(file, "train");
    train_state_fields(h.train, AttributeWriter{train});
    h5::write_sources(train, "sources", h.train.sources);
  }, keep);
}

void write_pca_model(const std::string& path, const PcaModel& pca, const Normalization& norm) {
  write_atomically(path, kPca, "PCA model", "pca-model", [&](const h5::Handle& file) {
    write_model(file, pca_model_config(pca), pca_model_params(pca));
    write_normalization(file, norm);
    const int64_t d = pca.mean.size(), k = pca.components.cols();
    h5::Handle g = h5::create_group(file, "pca");
    h5::write_attribute(g, "rows", pca.rows);
    h5::write_attribute(g, "total_variance", pca.total_variance);
    h5::write_dataset(g, "mean", {d}, pca.mean.data());
    h5::write_dataset(g, "components", {k, d}, pca.components.data());
    h5::write_dataset(g, "explained_variance", {k}, pca.explained_variance.data());
    const Eigen::VectorXd ratio = pca.explained_variance / pca.total_variance;
    h5::write_dataset(g, "explained_variance_ratio", {k}, ratio.data());
  });
}

Checkpoint read_checkpoint(const std::string& path) { return parse(path, read_bytes(path)); }

void save_checkpoint(const std::string& path, const CheckpointHeader& header,
                     std::span<const float> params, std::span<const float> m,
                     std::span<const float> v, int64_t keep, const Comm& comm) {
  comm.root_decides([&] { write_checkpoint(path, header, params, m, v, keep); });
}

Checkpoint load_checkpoint(const std::string& path, const Comm& comm) {
  std::string image;
  comm.root_decides([&] { image = read_bytes(path); });
  comm.broadcast(image);
  Checkpoint c;
  comm.agree([&] { c = parse(path, image); });
  return c;
}

}  // namespace aetrain
