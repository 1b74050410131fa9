// A model file applied to a dataset in blocks of rows: what encode and evaluate share. Memory
// per rank stays bounded by the block, whatever the size of the data.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "aetrain/checkpoint.hpp"
#include "aetrain/comm.hpp"
#include "aetrain/model.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/row_writer.hpp"
#include "aetrain/sampling.hpp"
#include "aetrain/sources.hpp"

namespace aetrain {

/// A model file loaded for a dataset whose rows it must fit, for blocks of up to `block` rows.
struct ModelOnData {
  Checkpoint file;
  Sources sources;
  int64_t block;
  Autoencoder<float> net;
  /// Calls fn for each block of this rank's even share of the rows (for_each_block), normalized
  /// as the model takes them. Independent reads: callers agree on errors.
  void for_each_block(const Comm& comm, const NormalizedBlockFn& fn) const {
    aetrain::for_each_block(sources, even_split(sources.rows, comm.rank(), comm.size()), block,
                            file.header.normalization, fn);
  }
};

/// Loads the model file at `path` on every rank and checks that it takes `data`'s rows
/// (Error(checkpoint) naming both otherwise); blocks are `block_rows` rows, or the rank's share
/// when smaller. Collective.
ModelOnData load_model(const std::string& path, const DataSource& data, int64_t block_rows,
                       int threads, const Comm& comm);

/// Records where an output came from as attributes of its dataset (model, model_kind,
/// model_global_step, data_file, dataset, created_by) and, with `sources_table`, the table of
/// its rows' files. Collective.
void annotate(RowWriter& out, const std::string& model_path, const Checkpoint& model,
              const Sources& data, bool sources_table = true);

}  // namespace aetrain
