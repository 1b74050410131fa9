// aetrain inspect: what a checkpoint or model file holds, for a person or a script.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "aetrain/checkpoint.hpp"
#include "aetrain/commands.hpp"
#include "aetrain/model.hpp"

namespace aetrain {
namespace {

Json inspect_json(const std::string& path, const Checkpoint& c) {
  const ModelConfig& m = c.header.model;
  Json j;
  j.add("path", path).add("kind", model_kind_name(c.kind)).add("created_by", c.created_by);
  j.add("model", to_json(m).add("parameters", int64_t(parameter_count(m))));
  const Normalization& norm = c.header.normalization;
  Json normalization = Json().add("kind", name_of(norm.kind));
  if (!norm.identity())
    normalization.add("rows", norm.rows)
        .add("offset", std::vector<double>(norm.offset.begin(), norm.offset.end()))
        .add("scale", std::vector<double>(norm.scale.begin(), norm.scale.end()));
  const RowTransform& t = c.header.transform;
  Json transform = Json()
                       .add("size_factor", t.asked.size_factor)
                       .add("scale", name_of(t.asked.scale))
                       .add("features", t.asked.features);
  if (!t.identity())
    transform.add("stored_columns", t.stored_cols).add("columns", t.columns).add("names", t.names);
  j.add("transform", transform);
  j.add("normalization", normalization);
  j.add("training_state", c.has_training_state);
  if (c.has_training_state) {
    j.add("optimizer", to_json(c.header.adam).add("name", "adam").add("step", c.header.adam_step));
    std::vector<Json> sources;  // rows -1: a file before format 3, which did not record them
    for (const SourceEntry& e : c.header.train.sources)
      sources.push_back(Json()
                            .add("file", e.file)
                            .add("dataset", e.dataset)
                            .add("first_row", e.first_row)
                            .add("rows", e.rows));
    j.add("train", to_json(c.header.train).add("sources", sources));
  }
  if (c.kind == ModelKind::pca) {
    const Eigen::VectorXd ratio = c.pca.explained_variance / c.pca.total_variance;
    j.add("pca", Json()
                     .add("components", int64_t(c.pca.components.cols()))
                     .add("rows", c.pca.rows)
                     .add("total_variance", c.pca.total_variance)
                     .add("explained_variance_ratio", ratio.sum()));
  }
  return j;
}

std::string inspect_text(const std::string& path, const Checkpoint& c) {
  const ModelConfig& m = c.header.model;
  std::string s = path + ": " +
                  (c.kind == ModelKind::pca ? "PCA model"
                   : c.has_training_state   ? "autoencoder checkpoint"
                                            : "autoencoder model (no training state)") +
                  (c.created_by.empty() ? "" : " written by " + c.created_by) + "\n";
  s += "  model:        " + describe(m) + "\n";
  s += "  parameters:   " + std::to_string(parameter_count(m)) + "\n";
  char line[512];
  const RowTransform& t = c.header.transform;
  if (!t.identity()) {
    // "size factor 10000, log1p, 2000 of 33538 columns (var:highly_variable): A1BG, A2M, ..."
    std::string names;
    for (size_t i = 0; i < std::min<size_t>(3, t.names.size()); ++i)
      names += (i ? ", " : ": ") + t.names[i];
    if (t.names.size() > 3) names += ", ...";
    s += "  transform:    " + describe(t) + names + " (/transform)\n";
  }
  const Normalization& norm = c.header.normalization;
  if (norm.identity()) {
    s += "  normalization: none (the model takes the data as stored)\n";
  } else {
    std::snprintf(line, sizeof line,
                  "  normalization: %s, statistics of %lld rows; x_norm = (x - offset) / scale, "
                  "offset in [%g, %g], scale in [%g, %g] (/normalization)\n",
                  name_of(norm.kind), (long long)norm.rows, norm.offset.minCoeff(),
                  norm.offset.maxCoeff(), norm.scale.minCoeff(), norm.scale.maxCoeff());
    s += line;
  }
  if (c.has_training_state) {
    const AdamConfig& a = c.header.adam;
    const TrainState& t = c.header.train;
    std::snprintf(line, sizeof line,
                  "  optimizer:    adam, learning rate %g, beta1 %g, beta2 %g, epsilon %g, "
                  "%lld updates\n",
                  a.learning_rate, a.beta1, a.beta2, a.epsilon, (long long)c.header.adam_step);
    s += line;
    std::snprintf(line, sizeof line,
                  "  training:     %lld epochs complete + %lld steps, global step %lld, global "
                  "batch %lld, seed %llu, written by %lld rank(s)\n",
                  (long long)t.epoch, (long long)t.step_in_epoch, (long long)t.global_step,
                  (long long)t.global_batch, (unsigned long long)t.seed, (long long)t.world_size);
    s += line;
    int64_t rows = 0;
    for (const SourceEntry& e : t.sources) rows += e.rows;
    s += "  data:         " + name_of_files(t.data_file + ":" + t.dataset, t.sources.size()) +
         (rows >= 0 ? ", " + std::to_string(rows) + " rows" : "") + "\n";
    if (t.window_rows > 0)
      s += "  layout:       blocks of " + std::to_string(t.block_rows) +
           " rows, windows of at most " + std::to_string(t.window_rows) + " rows\n";
    s += "  configuration:\n";
    size_t begin = 0;
    while (begin < t.config.size()) {
      const size_t end = std::min(t.config.find('\n', begin), t.config.size());
      s += "    " + t.config.substr(begin, end - begin) + "\n";
      begin = end + 1;
    }
  }
  if (c.kind == ModelKind::pca) {
    std::snprintf(line, sizeof line,
                  "  pca:          %lld components fitted on %lld rows explain %.2f%% of the "
                  "variance (total %g)\n",
                  (long long)c.pca.components.cols(), (long long)c.pca.rows,
                  100.0 * c.pca.explained_variance.sum() / c.pca.total_variance,
                  c.pca.total_variance);
    s += line;
  }
  return s;
}

}  // namespace

void run_inspect(const InspectConfig& c, const Comm& comm) {
  Checkpoint file;
  comm.root_decides([&] { file = read_checkpoint(c.path); });
  if (comm.rank() == 0)
    std::cout << (c.json ? inspect_json(c.path, file).str() + "\n" : inspect_text(c.path, file))
              << std::flush;
}

}  // namespace aetrain
