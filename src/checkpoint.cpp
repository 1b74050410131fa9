#include "aetrain/checkpoint.hpp"

#include <algorithm>
#include <filesystem>
#include <string_view>

#include "aetrain/layers.hpp"
#include "aetrain/model.hpp"
#include "aetrain/outputs.hpp"
#include "model_file.hpp"

namespace aetrain {
namespace {

constexpr const char* kCheckpoint = kCheckpointFormat;
constexpr const char* kPca = kPcaFormat;

using model_file::AttributeReader;
using model_file::AttributeWriter;
using model_file::bad;
using model_file::read_tree;

// Adds each field of a list to a JSON object.
struct JsonWriter {
  Json& json;
  template <class T>
  void operator()(const char* name, const T& value) const {
    json.add(name, model_file::stored(value));
  }
};

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
  // Read for its checksum alone: the commands compute the ratio from the variances.
  h5::read_dataset_f64(g, "explained_variance_ratio", {k});
  return pca;
}

// Parses a model file held in memory: the model file, then the training state or the PCA.
Checkpoint parse(const std::string& path, const std::string& image) {
  static constexpr std::string_view formats[] = {kCheckpoint, kPca};
  model_file::Opened f = model_file::open(path, image, formats);
  Checkpoint c;
  c.created_by = f.created_by;
  c.header.model = f.model;
  c.header.normalization = std::move(f.normalization);
  c.header.transform = std::move(f.transform);
  try {
    if (f.format == kCheckpoint) {
      // A model alone (weights from elsewhere, or written by hand) has no training state.
      for (const char* group : {"/optimizer", "/train"})
        if (!h5::exists(f.file, group))
          c.missing_state += (c.missing_state.empty() ? "" : " and ") + std::string(group);
      c.has_training_state = c.missing_state.empty();
      if (c.has_training_state) read_training_state(f.file, f.version, c.header);
    } else {
      c.kind = ModelKind::pca;
      c.pca = read_pca(f.file, c.header.model);
    }
  } catch (const h5::Failure& e) {
    bad(path, e.what());
  } catch (const std::invalid_argument& e) {
    bad(path, e.what());
  }
  c.params = read_tree(path, f.file, "/model", c.header.model);
  if (c.has_training_state) {
    c.m = read_tree(path, f.file, "/optimizer/m", c.header.model);
    c.v = read_tree(path, f.file, "/optimizer/v", c.header.model);
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
  int64_t bytes = 4 * int64_t(params.size() + m.size() + v.size()) +
                  16 * h.normalization.offset.size() + int64_t(h.train.config.size());
  for (const SourceEntry& e : h.train.sources)
    bytes += 16 + 2 * int64_t(e.file.size() + e.dataset.size());
  const int64_t datasets = 3 * 2 * int64_t(layer_shapes(h.model).size()) + 3;
  for (const std::string& n : h.transform.names) bytes += 16 + int64_t(n.size());
  bytes += 8 * int64_t(h.transform.columns.size());
  model_file::write(
      path, kCheckpoint, format_version_for(h.transform), name, "checkpoint",
      model_file::reserve_for(bytes, datasets + 2),
      [&](const h5::Handle& file, const auto& halfway) {
        model_file::write_model(file, h.model, params);
        model_file::write_transform(file, h.transform);
        model_file::write_normalization(file, h.normalization);
        const std::vector<LayerShape> layers = layer_shapes(h.model);
        h5::Handle opt = h5::create_group(file, "optimizer");
        h5::write_attribute(opt, "name", std::string("adam"));
        adam_fields(h.adam, AttributeWriter{opt});
        h5::write_attribute(opt, "step", h.adam_step);
        // The disk writes each tree while the next is checksummed and written.
        h5::start_writeback(file);
        model_file::write_tree(h5::create_group(opt, "m"), layers, m);
        halfway();
        h5::start_writeback(file);
        model_file::write_tree(h5::create_group(opt, "v"), layers, v);
        h5::start_writeback(file);

        const h5::Handle train = h5::create_group(file, "train");
        train_state_fields(h.train, AttributeWriter{train});
        h5::write_sources(train, "sources", h.train.sources, h5::Storage::checksummed);
      },
      [&] { keep_previous(path, keep); });
}

void write_pca_model(const std::string& path, const PcaModel& pca, const Normalization& norm,
                     const RowTransform& transform) {
  const int64_t d = pca.mean.size(), k = pca.components.cols();
  // The linear model's float32 weights, /pca's float64 arrays, the statistics, the transform.
  int64_t bytes = 4 * (2 * d * k + d + k) + 8 * (d + k * d + 2 * k) + 16 * d;
  for (const std::string& n : transform.names) bytes += 16 + int64_t(n.size());
  bytes += 8 * int64_t(transform.columns.size());
  model_file::write(
      path, kPca, format_version_for(transform), "PCA model", "pca-model",
      model_file::reserve_for(bytes, 12), [&](const h5::Handle& file, const auto& halfway) {
        model_file::write_model(file, pca_model_config(pca), pca_model_params(pca));
        halfway();
        model_file::write_transform(file, transform);
        model_file::write_normalization(file, norm);
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

void reseal_checkpoint(const std::string& path) { model_file::seal(path); }

Checkpoint read_checkpoint(const std::string& path) {
  return parse(path, model_file::read_bytes(path));
}

void save_checkpoint(const std::string& path, const CheckpointHeader& header,
                     std::span<const float> params, std::span<const float> m,
                     std::span<const float> v, int64_t keep, const Comm& comm) {
  comm.root_decides([&] { write_checkpoint(path, header, params, m, v, keep); });
}

Checkpoint load_checkpoint(const std::string& path, const Comm& comm) {
  std::string image;
  comm.root_decides([&] { image = model_file::read_bytes(path); });
  comm.broadcast(image);
  Checkpoint c;
  comm.agree([&] { c = parse(path, image); });
  return c;
}

}  // namespace aetrain
