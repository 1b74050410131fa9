// Exact principal component analysis from mergeable moments: the linear baseline, stored and
// applied as the equivalent linear autoencoder.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "aetrain/config.hpp"
#include "aetrain/matrix.hpp"
#include "aetrain/moments.hpp"

namespace aetrain {

/// A PCA of d-dimensional rows with k components.
struct PcaModel {
  int64_t rows = 0;                    // rows it was fitted on
  Eigen::VectorXd mean;                // (d)
  Eigen::MatrixXd components;          // (d, k): column c is the c-th principal axis
  Eigen::VectorXd explained_variance;  // (k), descending; covariance with N - 1
  double total_variance = 0;           // the covariance's trace
};

/// The top-k eigenvectors of the covariance of `m` (moments with Scatter::full), signs fixed so
/// that each axis's largest entry is positive. Throws std::invalid_argument unless 1 <= k <= d
/// and m has 2+ rows.
PcaModel fit_pca(const Moments& m, Index k);

/// The linear autoencoder that encodes and reconstructs as `pca` does: code = W^T (x - mean),
/// reconstruction = W code + mean, with W the components.
ModelConfig pca_model_config(const PcaModel& pca);
/// Its parameters in the model's flat layout.
std::vector<float> pca_model_params(const PcaModel& pca);

}  // namespace aetrain
