// aetrain encode: the code of every row, written in input order.
#include <csignal>

#include "aetrain/apply.hpp"
#include "aetrain/commands.hpp"
#include "aetrain/fault.hpp"
#include "aetrain/outputs.hpp"

namespace aetrain {

void run_encode(const EncodeConfig& c, const Comm& comm, Log& log) {
  const Timers::Clock::time_point start = Timers::Clock::now();
  ModelOnData m = load_model(c.model, c.data, c.block_rows, c.threads, comm);
  const int64_t width = m.file.header.model.encoder_widths.back();
  OutputPlan plan;
  plan.outputs = {{"--out", c.out, FileKind::data}};
  plan.read("--data", m.sources);
  plan.read("--model", c.model);
  plan.read("--config", c.config_file);
  check_outputs(plan, comm);
  // An .h5ad --out: an AnnData file of the input's cells (rank 0 builds it).
  const bool anndata = c.out.ends_with(".h5ad");
  AnnDataFrame frame;
  if (anndata)
    comm.root_decides([&] {
      frame.obs_names = row_names(m.sources);  // also checks that they name every row
      frame.obs_group = row_table(m.sources);
      if (!frame.obs_group.empty()) frame.obs_file = m.sources.files.front().file;
    });
  RowWriter out(c.out, c.out_dataset, {m.sources.rows, width}, c.overwrite, comm,
                Precision::float32, "the codes", anndata ? &frame : nullptr);
  comm.agree([&] {
    m.for_each_block(
        comm, [&](int64_t first, int64_t n, ConstMatrixMap<double>, ConstMatrixMap<float> x) {
          out.write(first, n, m.net.encode(x).data());
          if (fault("encode-block")) std::raise(SIGKILL);
        });
  });
  annotate(out, c.model, m.file, m.sources, /*sources_table=*/!anndata);
  if (anndata) {
    out.attribute("encoding-type", std::string("array"));
    out.attribute("encoding-version", std::string("0.2.0"));
  }
  out.commit();
  log.line("encode: " + std::to_string(m.sources.rows) + " rows of " + m.sources.name + " -> " +
           c.out + ":" + c.out_dataset + " [" + std::to_string(m.sources.rows) + ", " +
           std::to_string(width) + "] in " + std::to_string(seconds_since(start)) + " s");
}

}  // namespace aetrain
