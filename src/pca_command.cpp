// aetrain pca: an exact PCA of a dataset, fitted in parallel and written as a model file.
#include <cstdio>

#include "aetrain/checkpoint.hpp"
#include "aetrain/commands.hpp"
#include "aetrain/data.hpp"
#include "aetrain/files.hpp"
#include "aetrain/normalization.hpp"

namespace aetrain {

PcaModel run_pca(const PcaConfig& c, const Comm& comm, Log& log) {
  const Timers::Clock::time_point start = Timers::Clock::now();
  const Accept accept = accepted_by(c.normalize);
  const DatasetShape shape = probe_dataset(c.data, comm, accept);
  if (c.components > shape.cols)
    fail_replicated(ExitCode::usage, "--components " + std::to_string(c.components) +
                                         " exceeds the " + std::to_string(shape.cols) +
                                         " columns of " + c.data.file + ": " + c.data.dataset);
  if (shape.rows < 2) fail_replicated(ExitCode::data, c.data.file + ": " + c.data.dataset +
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

}  // namespace aetrain
