// The subcommands that use a trained model or fit the PCA baseline: each reads its rows in
// blocks, so memory per rank stays bounded whatever the size of the data.
#pragma once

#include <cstdint>

#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/log.hpp"
#include "aetrain/pca.hpp"

namespace aetrain {

/// Writes codes[N, code width] (float32, input row order) of the data. Collective.
void run_encode(const EncodeConfig& config, const Comm& comm, Log& log);

/// The reconstruction error: mean over all rows and columns, computed in double, in the data's
/// units and in the model's normalized units (the same for a model without normalization).
struct Evaluation {
  double mse = 0;
  double normalized_mse = 0;
  int64_t rows = 0;
};

/// Computes (and with options writes per-row errors and reconstructions of) the data's
/// reconstruction error, and prints {"mse": ..., "normalized_mse": ..., "rows": ...,
/// "normalization": ...} on rank 0. Collective.
Evaluation run_evaluate(const EvaluateConfig& config, const Comm& comm, Log& log);

/// Fits an exact PCA in parallel and writes it as a model file (rank 0). Collective.
PcaModel run_pca(const PcaConfig& config, const Comm& comm, Log& log);

/// Prints what a checkpoint or PCA model file holds, for a person or (json) for a script.
void run_inspect(const InspectConfig& config, const Comm& comm);

}  // namespace aetrain
