#include "aetrain/commands.hpp"

#include <algorithm>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>

#include "aetrain/checkpoint.hpp"
#include "aetrain/data.hpp"
#include "aetrain/fault.hpp"
#include "aetrain/layers.hpp"
#include "aetrain/model.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/runtime.hpp"

namespace aetrain {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Rows held at once: --block-rows, but no more than this rank's share.
int64_t block_size(int64_t block_rows, int64_t rows, const Comm& comm) {
  const RowRange share = even_split(rows, comm.rank(), comm.size());
  return std::max<int64_t>(1, std::min(block_rows, share.end - share.begin));
}

// A model file applied to a dataset whose rows it must fit, for blocks of up to `block` rows.
struct ModelOnData {
  Checkpoint file;
  DatasetShape shape;
  int64_t block;
  Autoencoder<float> net;
};

ModelOnData load_model(const std::string& path, const DataSource& data, int64_t block_rows,
                       int threads, const Comm& comm) {
  Checkpoint file = load_checkpoint(path, comm);
  // Integer data is fine for a model that normalizes its input.
  const DatasetShape shape =
      probe_dataset(data, comm, accepted_by(file.header.normalization.kind));
  if (file.header.model.input_dim != shape.cols)
    fail_everywhere(ExitCode::checkpoint,
                    path + ": the model takes rows of " +
                        std::to_string(file.header.model.input_dim) + " columns; " + data.file +
                        ": " + data.dataset + " has " + std::to_string(shape.cols));
  const int64_t block = block_size(block_rows, shape.rows, comm);
  Autoencoder<float> net(file.header.model, block, threads);
  std::copy(file.params.begin(), file.params.end(), net.params().begin());
  file.params = {};
  return {std::move(file), shape, block, std::move(net)};
}

// Calls fn(first, n, raw, x) for each block of this rank's even share of the rows: raw (cols, n)
// the values as stored, x (cols, n) as the model takes them (normalized). Independent reads:
// callers agree on errors afterwards.
template <class F>
void for_each_block(const RowReader& reader, const Normalization& norm, int64_t block,
                    const Comm& comm, F&& fn) {
  const Index cols = reader.shape().cols;
  Matrix<double> raw(cols, block);
  Matrix<float> x(cols, block);
  const RowRange share = even_split(reader.shape().rows, comm.rank(), comm.size());
  for (int64_t first = share.begin; first < share.end; first += block) {
    const int64_t n = std::min<int64_t>(block, share.end - first);
    reader.read(first, n, raw.data());
    normalize(norm, ConstMatrixMap<double>(raw.data(), cols, n), MatrixMap<float>(x.data(), cols, n));
    fn(first, n, ConstMatrixMap<double>(raw.data(), cols, n), ConstMatrixMap<float>(x.data(), cols, n));
  }
}

const char* kind_name(ModelKind kind) { return kind == ModelKind::pca ? "pca" : "autoencoder"; }

// Where an output came from, on the output dataset.
void annotate(RowWriter& out, const std::string& model_path, const Checkpoint& model,
              const DataSource& data) {
  out.attribute("model", model_path);
  out.attribute("model_kind", std::string(kind_name(model.kind)));
  out.attribute("model_global_step", model.header.train.global_step);
  out.attribute("data_file", data.file);
  out.attribute("dataset", data.dataset);
  out.attribute("created_by", std::string("aetrain ") + AETRAIN_VERSION);
}

}  // namespace

void run_encode(const EncodeConfig& c, const Comm& comm, Log& log) {
  const Clock::time_point start = Clock::now();
  ModelOnData m = load_model(c.model, c.data, c.block_rows, c.threads, comm);
  const Normalization& norm = m.file.header.normalization;
  const int64_t width = m.file.header.model.encoder_widths.back();
  // The writer opens first: the output may be the input file itself.
  RowWriter out(c.out, c.out_dataset, {m.shape.rows, width}, c.overwrite, comm);
  {
    RowReader reader(c.data, comm, accepted_by(norm.kind));
    comm.agree([&] {
      for_each_block(reader, norm, m.block, comm,
                     [&](int64_t first, int64_t n, ConstMatrixMap<double>, ConstMatrixMap<float> x) {
                       out.write(first, n, m.net.encode(x).data());
                       if (fault("encode-block")) std::raise(SIGKILL);
                     });
    });
  }
  annotate(out, c.model, m.file, c.data);
  out.commit();
  log.line("encode: " + std::to_string(m.shape.rows) + " rows of " + c.data.file + ":" +
           c.data.dataset + " -> " + c.out + ":" + c.out_dataset + " [" +
           std::to_string(m.shape.rows) + ", " + std::to_string(width) + "] in " +
           std::to_string(seconds_since(start)) + " s");
}

Evaluation run_evaluate(const EvaluateConfig& c, const Comm& comm, Log& log) {
  if (!c.per_sample.empty() && c.per_sample == c.reconstruct)
    fail_everywhere(ExitCode::usage, "--per-sample and --reconstruct need different files");
  ModelOnData m = load_model(c.model, c.data, c.block_rows, c.threads, comm);
  const Normalization& norm = m.file.header.normalization;
  const int64_t rows = m.shape.rows, cols = m.shape.cols;
  std::optional<RowWriter> per_sample, reconstruction;
  if (!c.per_sample.empty()) {
    per_sample.emplace(c.per_sample, c.per_sample_dataset, std::vector<int64_t>{rows},
                       c.overwrite, comm);
    per_sample->attribute("units", std::string(norm.identity() ? "data" : "normalized"));
  }
  if (!c.reconstruct.empty())  // in the data's units, and in float64 for float64 data
    reconstruction.emplace(c.reconstruct, c.reconstruct_dataset, std::vector<int64_t>{rows, cols},
                           c.overwrite, comm, m.shape.precision);
  // Squared errors summed over rows (each row's mean over its columns): in the data's units,
  // in the model's normalized units; then the row count.
  double sums[3] = {0.0, 0.0, 0.0};
  {
    RowReader reader(c.data, comm, accepted_by(norm.kind));
    std::vector<float> errors(size_t(m.block));
    Matrix<double> restored(cols, m.block);  // reconstructions in the data's units
    const bool narrow = reconstruction && m.shape.precision == Precision::float32;
    Matrix<float> restored_f(cols, narrow ? m.block : 0);
    comm.agree([&] {
      for_each_block(reader, norm, m.block, comm,
                     [&](int64_t first, int64_t n, ConstMatrixMap<double> raw, ConstMatrixMap<float> x) {
        m.net.forward(x);
        const ConstMatrixMap<float> y = m.net.output();
        MatrixMap<double> y_data(restored.data(), cols, n);
        denormalize(norm, y, y_data);
        for (int64_t i = 0; i < n; ++i) {
          const double e =
              squared_error_sum<float>(ConstMatrixMap<float>(y.data() + i * cols, cols, 1),
                                       ConstMatrixMap<float>(x.data() + i * cols, cols, 1));
          errors[size_t(i)] = float(e);
          sums[1] += e;
        }
        sums[0] += squared_error_sum<double>(ConstMatrixMap<double>(y_data.data(), cols, n), raw);
        sums[2] += double(n);
        if (per_sample) per_sample->write(first, n, errors.data());
        if (narrow) {
          MatrixMap<float>(restored_f.data(), cols, n) = y_data.cast<float>();
          reconstruction->write(first, n, restored_f.data());
        } else if (reconstruction) {
          reconstruction->write(first, n, y_data.data());
        }
      });
    });
  }
  comm.allreduce_sum(std::span<double>(sums));
  for (std::optional<RowWriter>* w : {&per_sample, &reconstruction})
    if (*w) {
      annotate(**w, c.model, m.file, c.data);
      (*w)->commit();
    }
  const Evaluation result{sums[0] / sums[2], sums[1] / sums[2], int64_t(sums[2])};
  log.result(Json()
                 .add("mse", result.mse)
                 .add("normalized_mse", result.normalized_mse)
                 .add("rows", result.rows)
                 .add("normalization", normalize_name(norm.kind))
                 .str());
  return result;
}

PcaModel run_pca(const PcaConfig& c, const Comm& comm, Log& log) {
  const Clock::time_point start = Clock::now();
  const Accept accept = accepted_by(c.normalize);
  const DatasetShape shape = probe_dataset(c.data, comm, accept);
  if (c.components > shape.cols)
    fail_everywhere(ExitCode::usage, "--components " + std::to_string(c.components) +
                                         " exceeds the " + std::to_string(shape.cols) +
                                         " columns of " + c.data.file + ": " + c.data.dataset);
  if (shape.rows < 2) fail_everywhere(ExitCode::data, c.data.file + ": " + c.data.dataset +
                                                          ": a PCA needs at least 2 rows");
  require_writable(c.out, comm);  // before the work, not after
  // One pass: the moments of the rows give those of the normalized rows exactly.
  const Moments moments = dataset_moments(c.data, Scatter::full, accept, c.block_rows, comm);
  int64_t constant = 0;
  const Normalization norm = fit_normalization(c.normalize, moments, &constant);
  if (constant > 0)
    log.warn(c.data.file + ": " + c.data.dataset + ": " +
             constant_columns_warning(constant, shape.cols, c.normalize));
  const PcaModel pca = fit_pca(normalized(moments, norm), c.components);  // the same on every rank
  comm.root_decides([&] { write_pca_model(c.out, pca, norm); });
  const double explained = pca.explained_variance.sum() / pca.total_variance;
  char text[320];
  std::snprintf(text, sizeof text,
                "pca: %lld components of %lld rows x %lld columns%s explain %.2f%% of the "
                "variance -> %s in %.2f s",
                (long long)c.components, (long long)shape.rows, (long long)shape.cols,
                norm.identity() ? "" : (std::string(" (normalized: ") + normalize_name(norm.kind) + ")").c_str(),
                100.0 * explained, c.out.c_str(), seconds_since(start));
  log.line(text);
  return pca;
}

namespace {

Json inspect_json(const std::string& path, const Checkpoint& c) {
  const ModelConfig& m = c.header.model;
  Json j;
  j.add("path", path).add("kind", kind_name(c.kind)).add("created_by", c.created_by);
  j.add("model", Json()
                     .add("input_dim", m.input_dim)
                     .add("encoder_widths", m.encoder_widths)
                     .add("activation", activation_name(m.activation))
                     .add("code_activation", activation_name(m.code_activation))
                     .add("output_activation", activation_name(m.output_activation))
                     .add("parameters", int64_t(parameter_count(m))));
  const Normalization& norm = c.header.normalization;
  Json normalization = Json().add("kind", normalize_name(norm.kind));
  if (!norm.identity())
    normalization.add("rows", norm.rows)
        .add("offset", std::vector<double>(norm.offset.begin(), norm.offset.end()))
        .add("scale", std::vector<double>(norm.scale.begin(), norm.scale.end()));
  j.add("normalization", normalization);
  j.add("training_state", c.has_training_state);
  if (c.has_training_state) {
    const AdamConfig& a = c.header.adam;
    const TrainState& t = c.header.train;
    j.add("optimizer", Json()
                           .add("name", "adam")
                           .add("learning_rate", a.learning_rate)
                           .add("beta1", a.beta1)
                           .add("beta2", a.beta2)
                           .add("epsilon", a.epsilon)
                           .add("step", c.header.adam_step));
    j.add("train", Json()
                       .add("epoch", t.epoch)
                       .add("step_in_epoch", t.step_in_epoch)
                       .add("global_step", t.global_step)
                       .add("seed", int64_t(t.seed))
                       .add("global_batch", t.global_batch)
                       .add("world_size", t.world_size)
                       .add("data_file", t.data_file)
                       .add("dataset", t.dataset)
                       .add("config", t.config));
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
                  (c.kind == ModelKind::pca      ? "PCA model"
                   : c.has_training_state        ? "autoencoder checkpoint"
                                                 : "autoencoder model (no training state)") +
                  (c.created_by.empty() ? "" : " written by " + c.created_by) + "\n";
  s += "  model:        " + describe(m) + "\n";
  s += "  parameters:   " + std::to_string(parameter_count(m)) + "\n";
  char line[512];
  const Normalization& norm = c.header.normalization;
  if (norm.identity()) {
    s += "  normalization: none (the model takes the data as stored)\n";
  } else {
    std::snprintf(line, sizeof line,
                  "  normalization: %s, statistics of %lld rows; x_norm = (x - offset) / scale, "
                  "offset in [%g, %g], scale in [%g, %g] (/normalization)\n",
                  normalize_name(norm.kind), (long long)norm.rows, norm.offset.minCoeff(),
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
    s += "  data:         " + t.data_file + ":" + t.dataset + "\n";
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
