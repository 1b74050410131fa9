// aetrain pca: an exact PCA of a dataset, fitted in parallel and written as a model file.
#include <cstdio>

#include "aetrain/checkpoint.hpp"
#include "aetrain/commands.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/outputs.hpp"
#include "aetrain/sources.hpp"

namespace aetrain {

PcaModel run_pca(const PcaConfig& c, const Comm& comm, Log& log) {
  const Timers::Clock::time_point start = Timers::Clock::now();
  const Sources sources =
      probe_sources(c.data, comm, accepted_by(c.normalize, c.counts), asked_for(c.counts));
  if (c.components > sources.cols)
    fail_replicated(ExitCode::usage, "--components " + std::to_string(c.components) +
                                         " exceeds the " + std::to_string(sources.cols) +
                                         " columns of " + sources.name);
  if (sources.rows < 2)
    fail_replicated(ExitCode::data, sources.name + ": a PCA needs at least 2 rows");
  OutputPlan plan;  // before the work, not after
  plan.outputs = {{"--out", c.out, FileKind::pca_model}};
  plan.read("--data", sources);
  plan.read("--config", c.config_file);
  plan.overwrite = c.overwrite;
  check_outputs(plan, comm);
  // One pass: the moments of the rows give those of the normalized rows exactly.
  int64_t zero_total = 0;
  const Moments moments = dataset_moments(sources, Scatter::full, c.block_rows, comm, &zero_total);
  if (!sources.transform.identity())
    log.line("counts: " + describe(sources.transform) +
             (c.counts.size_factor > 0
                  ? "; " + std::to_string(zero_total) + " of " + std::to_string(sources.rows) +
                        " rows have a total of 0 and stay zeros"
                  : ""));
  int64_t constant = 0;
  const Normalization norm = fit_normalization(c.normalize, moments, &constant);
  if (constant > 0)
    log.warn(sources.name + ": " + constant_columns_warning(constant, sources.cols, c.normalize));
  const PcaModel pca = fit_pca(normalized(moments, norm), c.components);  // the same on every rank
  comm.root_decides([&] { write_pca_model(c.out, pca, norm, sources.transform); });
  const double explained = pca.explained_variance.sum() / pca.total_variance;
  char text[320];
  std::snprintf(
      text, sizeof text,
      "pca: %lld components of %lld rows x %lld columns%s explain %.2f%% of the "
      "variance -> %s in %.2f s",
      (long long)c.components, (long long)sources.rows, (long long)sources.cols,
      norm.identity() ? "" : (std::string(" (normalized: ") + name_of(norm.kind) + ")").c_str(),
      100.0 * explained, c.out.c_str(), seconds_since(start));
  log.line(text);
  return pca;
}

}  // namespace aetrain
