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
#include "aetrain/runtime.hpp"

namespace aetrain {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The autoencoder of a model file (a checkpoint or a PCA), for blocks of up to `block_rows`
// rows of `data`, whose rows it must fit.
Autoencoder<float> load_model(const std::string& path, const DataSource& data,
                              const DatasetShape& shape, int64_t block_rows, int threads,
                              const Comm& comm, Checkpoint& file) {
  file = load_checkpoint(path, comm);
  if (file.header.model.input_dim != shape.cols)
    fail_everywhere(ExitCode::checkpoint,
                    path + ": the model takes rows of " +
                        std::to_string(file.header.model.input_dim) + " columns; " + data.file +
                        ": " + data.dataset + " has " + std::to_string(shape.cols));
  Autoencoder<float> net(file.header.model, block_rows, threads);
  std::copy(file.params.begin(), file.params.end(), net.params().begin());
  file.params = {};
  return net;
}

// Rows held at once: --block-rows, but no more than this rank's share.
int64_t block_size(int64_t block_rows, int64_t rows, const Comm& comm) {
  const RowRange share = even_split(rows, comm.rank(), comm.size());
  return std::max<int64_t>(1, std::min(block_rows, share.end - share.begin));
}

// Calls fn(first, n, x) for each block of this rank's even share of the rows, x (cols, n) in
// `buffer` (cols, block). Independent reads: callers agree on errors afterwards.
template <class F>
void for_each_block(const RowReader& reader, Matrix<float>& buffer, const Comm& comm, F&& fn) {
  const RowRange share = even_split(reader.shape().rows, comm.rank(), comm.size());
  for (int64_t first = share.begin; first < share.end; first += buffer.cols()) {
    const int64_t n = std::min<int64_t>(buffer.cols(), share.end - first);
    reader.read(first, n, buffer.data());
    fn(first, n, ConstMatrixMap<float>(buffer.data(), buffer.rows(), n));
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
  const DatasetShape shape = probe_dataset(c.data, comm);
  const int64_t block = block_size(c.block_rows, shape.rows, comm);
  Checkpoint model;
  Autoencoder<float> net = load_model(c.model, c.data, shape, block, c.threads, comm, model);
  const int64_t width = model.header.model.encoder_widths.back();
  // The writer opens first: the output may be the input file itself.
  RowWriter out(c.out, c.out_dataset, {shape.rows, width}, c.overwrite, comm);
  {
    RowReader reader(c.data, comm);
    Matrix<float> x(shape.cols, block);
    comm.agree([&] {
      for_each_block(reader, x, comm, [&](int64_t first, int64_t n, ConstMatrixMap<float> rows) {
        out.write(first, n, net.encode(rows).data());
        if (fault("encode-block")) std::raise(SIGKILL);
      });
    });
  }
  annotate(out, c.model, model, c.data);
  out.commit();
  log.line("encode: " + std::to_string(shape.rows) + " rows of " + c.data.file + ":" +
           c.data.dataset + " -> " + c.out + ":" + c.out_dataset + " [" +
           std::to_string(shape.rows) + ", " + std::to_string(width) + "] in " +
           std::to_string(seconds_since(start)) + " s");
}

Evaluation run_evaluate(const EvaluateConfig& c, const Comm& comm, Log& log) {
  if (!c.per_sample.empty() && c.per_sample == c.reconstruct)
    fail_everywhere(ExitCode::usage, "--per-sample and --reconstruct need different files");
  const DatasetShape shape = probe_dataset(c.data, comm);
  const int64_t block = block_size(c.block_rows, shape.rows, comm);
  Checkpoint model;
  Autoencoder<float> net = load_model(c.model, c.data, shape, block, c.threads, comm, model);
  std::optional<RowWriter> per_sample, reconstruction;
  if (!c.per_sample.empty())
    per_sample.emplace(c.per_sample, c.per_sample_dataset, std::vector<int64_t>{shape.rows},
                       c.overwrite, comm);
  if (!c.reconstruct.empty())
    reconstruction.emplace(c.reconstruct, c.reconstruct_dataset,
                           std::vector<int64_t>{shape.rows, shape.cols}, c.overwrite, comm);
  double sums[2] = {0.0, 0.0};  // squared error over all elements / columns, rows
  {
    RowReader reader(c.data, comm);
    Matrix<float> x(shape.cols, block);
    std::vector<float> errors(static_cast<size_t>(block));
    comm.agree([&] {
      for_each_block(reader, x, comm, [&](int64_t first, int64_t n, ConstMatrixMap<float> rows) {
        net.forward(rows);
        const ConstMatrixMap<float> y = net.output();
        for (int64_t i = 0; i < n; ++i) {
          const double e = squared_error_sum<float>(
              ConstMatrixMap<float>(y.data() + i * shape.cols, shape.cols, 1),
              ConstMatrixMap<float>(rows.data() + i * shape.cols, shape.cols, 1));
          errors[size_t(i)] = float(e);
          sums[0] += e;
        }
        sums[1] += double(n);
        if (per_sample) per_sample->write(first, n, errors.data());
        if (reconstruction) reconstruction->write(first, n, y.data());
      });
    });
  }
  comm.allreduce_sum(std::span<double>(sums));
  for (std::optional<RowWriter>* w : {&per_sample, &reconstruction})
    if (*w) {
      annotate(**w, c.model, model, c.data);
      (*w)->commit();
    }
  const Evaluation result{sums[0] / sums[1], int64_t(sums[1])};
  log.result(Json().add("mse", result.mse).add("rows", result.rows).str());
  return result;
}

Moments distributed_moments(const DataSource& data, int64_t block_rows, const Comm& comm) {
  RowReader reader(data, comm);
  const Index d = reader.shape().cols;
  Moments local(d);
  Matrix<float> x(d, block_size(block_rows, reader.shape().rows, comm));
  comm.agree([&] {
    for_each_block(reader, x, comm, [&](int64_t, int64_t, ConstMatrixMap<float> rows) {
      local.add(rows);
    });
  });
  // Merge over ranks (Chan et al.): the global mean first, then every rank's scatter about it.
  std::vector<double> sums(size_t(1 + d));
  sums[0] = double(local.rows);
  Eigen::Map<Eigen::VectorXd>(sums.data() + 1, d) = local.mean * double(local.rows);
  comm.allreduce_sum(std::span<double>(sums));
  Moments total(d);
  total.rows = int64_t(sums[0]);
  total.mean = Eigen::Map<Eigen::VectorXd>(sums.data() + 1, d) / std::max(1.0, sums[0]);
  total.scatter = local.scatter.selfadjointView<Eigen::Lower>();
  const Eigen::VectorXd delta = local.mean - total.mean;
  if (local.rows > 0) total.scatter.noalias() += double(local.rows) * delta * delta.transpose();
  comm.allreduce_sum(std::span<double>(total.scatter.data(), size_t(total.scatter.size())));
  return total;
}

PcaModel run_pca(const PcaConfig& c, const Comm& comm, Log& log) {
  const Clock::time_point start = Clock::now();
  const DatasetShape shape = probe_dataset(c.data, comm);
  if (c.components > shape.cols)
    fail_everywhere(ExitCode::usage, "--components " + std::to_string(c.components) +
                                         " exceeds the " + std::to_string(shape.cols) +
                                         " columns of " + c.data.file + ": " + c.data.dataset);
  if (shape.rows < 2) fail_everywhere(ExitCode::data, c.data.file + ": " + c.data.dataset +
                                                          ": a PCA needs at least 2 rows");
  require_writable(c.out, comm);  // before the work, not after
  const Moments moments = distributed_moments(c.data, c.block_rows, comm);
  const PcaModel pca = fit_pca(moments, c.components);  // the same on every rank
  comm.root_decides([&] { write_pca_model(c.out, pca); });
  const double explained = pca.explained_variance.sum() / pca.total_variance;
  char text[256];
  std::snprintf(text, sizeof text,
                "pca: %lld components of %lld rows x %lld columns explain %.2f%% of the "
                "variance -> %s in %.2f s",
                (long long)c.components, (long long)shape.rows, (long long)shape.cols,
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
                  (c.kind == ModelKind::pca ? "PCA model" : "autoencoder checkpoint") +
                  " written by " + c.created_by + "\n";
  s += "  model:        " + describe(m) + "\n";
  s += "  parameters:   " + std::to_string(parameter_count(m)) + "\n";
  char line[512];
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
