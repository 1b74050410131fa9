#include "aetrain/apply.hpp"

#include "aetrain/error.hpp"

namespace aetrain {

ModelOnData load_model(const std::string& path, const DataSource& data, int64_t block_rows,
                       int threads, const Comm& comm) {
  Checkpoint file = load_checkpoint(path, comm);
  // Integer data is fine for a model that transforms or normalizes its input.
  Sources sources = probe_sources(
      data, comm, accepted_by(file.header.normalization.kind, file.header.transform.asked),
      file.header.transform);
  if (file.header.model.input_dim != sources.cols)
    fail_replicated(ExitCode::checkpoint, path + ": the model takes rows of " +
                                              std::to_string(file.header.model.input_dim) +
                                              " columns; " + sources.name + " has " +
                                              std::to_string(sources.cols));
  // Rows held at once: --block-rows, but no more than this rank's share.
  const RowRange share = even_split(sources.rows, comm.rank(), comm.size());
  const int64_t block = std::max<int64_t>(1, std::min(block_rows, share.end - share.begin));
  Autoencoder<float> net(file.header.model, block, threads);
  std::copy(file.params.begin(), file.params.end(), net.params().begin());
  file.params = {};
  return {std::move(file), std::move(sources), block, std::move(net)};
}

void annotate(RowWriter& out, const std::string& model_path, const Checkpoint& model,
              const Sources& data, bool sources_table) {
  out.attribute("model", model_path);
  out.attribute("model_kind", std::string(model_kind_name(model.kind)));
  out.attribute("model_global_step", model.header.train.global_step);
  out.attribute("data_file", data.files.front().file);
  out.attribute("dataset", data.files.front().dataset);
  out.attribute("created_by", std::string("aetrain ") + AETRAIN_VERSION);
  if (sources_table) out.sources(data.files);
}

}  // namespace aetrain
