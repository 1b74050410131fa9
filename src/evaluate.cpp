// aetrain evaluate: the reconstruction error, overall and per row, and the reconstructions.
#include <optional>

#include "aetrain/apply.hpp"
#include "aetrain/commands.hpp"
#include "aetrain/layers.hpp"
#include "aetrain/outputs.hpp"

namespace aetrain {

Evaluation run_evaluate(const EvaluateConfig& c, const Comm& comm, Log& log) {
  ModelOnData m = load_model(c.model, c.data, c.block_rows, c.threads, comm);
  const Normalization& norm = m.file.header.normalization;
  const int64_t rows = m.sources.rows, cols = m.sources.cols;
  OutputPlan plan;
  if (!c.per_sample.empty()) plan.outputs.push_back({"--per-sample", c.per_sample, FileKind::data});
  if (!c.reconstruct.empty())
    plan.outputs.push_back({"--reconstruct", c.reconstruct, FileKind::data});
  plan.read("--data", m.sources);
  plan.read("--model", c.model);
  plan.read("--config", c.config_file);
  check_outputs(plan, comm);
  std::optional<RowWriter> per_sample, reconstruction;
  if (!c.per_sample.empty()) {
    per_sample.emplace(c.per_sample, c.per_sample_dataset, std::vector<int64_t>{rows}, c.overwrite,
                       comm, Precision::float32, "the per-sample errors");
    per_sample->attribute("units", std::string(norm.identity() ? "data" : "normalized"));
  }
  if (!c.reconstruct.empty())  // in the data's units, and in float64 for float64 data
    reconstruction.emplace(c.reconstruct, c.reconstruct_dataset, std::vector<int64_t>{rows, cols},
                           c.overwrite, comm, m.sources.precision, "the reconstructions");
  // Squared errors summed over rows (each row's mean over its columns): in the data's units,
  // in the model's normalized units; then the row count.
  double sums[3] = {0.0, 0.0, 0.0};
  {
    std::vector<float> errors(size_t(m.block));
    Matrix<double> restored(cols, m.block);  // reconstructions in the data's units
    const bool narrow = reconstruction && m.sources.precision == Precision::float32;
    Matrix<float> restored_f(cols, narrow ? m.block : 0);
    comm.agree([&] {
      m.for_each_block(comm, [&](int64_t first, int64_t n, ConstMatrixMap<double> raw,
                                 ConstMatrixMap<float> x) {
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
      annotate(**w, c.model, m.file, m.sources);
      (*w)->commit();
    }
  const Evaluation result{sums[0] / sums[2], sums[1] / sums[2], int64_t(sums[2])};
  log.result(Json()
                 .add("mse", result.mse)
                 .add("normalized_mse", result.normalized_mse)
                 .add("rows", result.rows)
                 .add("normalization", name_of(norm.kind))
                 .str());
  return result;
}

}  // namespace aetrain
