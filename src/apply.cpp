#include "aetrain/apply.hpp"

#include "aetrain/error.hpp"

namespace aetrain {

ModelOnData load_model(const std::string& path, const DataSource& data, int64_t block_rows,
                       int threads, const Comm& comm) {
  Checkpoint file = load_checkpoint(path, comm);
  // Integer data is fine for a model that normalizes its input.
  const DatasetShape shape =
      probe_dataset(data, comm, accepted_by(file.header.normalization.kind));
  if (file.header.model.input_dim != shape.cols)
    fail_replicated(ExitCode::checkpoint,
                    path + ": the model takes rows of " +
                        std::to_string(file.header.model.input_dim) + " columns; " + data.file +
                        ": " + data.dataset + " has " + std::to_string(shape.cols));
  // Rows held at once: --block-rows, but no more than this rank's share.
  const RowRange share = even_split(shape.rows, comm.rank(), comm.size());
  const int64_t block = std::max<int64_t>(1, std::min(block_rows, share.end - share.begin));
  Autoencoder<float> net(file.header.model, block, threads);
  std::copy(file.params.begin(), file.params.end(), net.params().begin());
  file.params = {};
  return {std::move(file), shape, block, std::move(net)};
}

void annotate(RowWriter& out, const std::string& model_path, const Checkpoint& model,
              const DataSource& data) {
  out.attribute("model", model_path);
  out.attribute("model_kind", std::string(model_kind_name(model.kind)));
  out.attribute("model_global_step", model.header.train.global_step);
  out.attribute("data_file", data.file);
  out.attribute("dataset", data.dataset);
  out.attribute("created_by", std::string("aetrain ") + AETRAIN_VERSION);
}

}  // namespace aetrain
