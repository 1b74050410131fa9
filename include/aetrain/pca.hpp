// Exact principal component analysis from mergeable moments: the linear baseline, stored and
// applied as the equivalent linear autoencoder.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "aetrain/config.hpp"
#include "aetrain/gemm.hpp"

namespace aetrain {

/// Row count, mean and centred scatter sum((x - mean)(x - mean)^T) of a set of rows, in double.
/// Two sets merge exactly (Chan, Golub and LeVeque, "Updating formulae and a pairwise algorithm
/// for computing sample variances", 1979), so blocks and ranks can be summed in any grouping
/// without the cancellation of sum(x x^T) - n mean mean^T.
struct Moments {
  int64_t rows = 0;
  Eigen::VectorXd mean;
  Eigen::MatrixXd scatter;  // (d, d), lower triangle kept up to date

  explicit Moments(Index d) : mean(Eigen::VectorXd::Zero(d)), scatter(Eigen::MatrixXd::Zero(d, d)) {}
  /// Adds the samples x (d, n).
  void add(ConstMatrixMap<float> x);
  /// Adds another set's moments.
  void merge(const Moments& other);
};

/// A PCA of d-dimensional rows with k components.
struct PcaModel {
  int64_t rows = 0;                        // rows it was fitted on
  Eigen::VectorXd mean;                    // (d)
  Eigen::MatrixXd components;              // (d, k): column c is the c-th principal axis
  Eigen::VectorXd explained_variance;      // (k), descending; covariance with N - 1
  double total_variance = 0;               // the covariance's trace
};

/// The top-k eigenvectors of the covariance of `m` (signs fixed so that each axis's largest
/// entry is positive). Throws std::invalid_argument unless 1 <= k <= d and m has 2+ rows.
PcaModel fit_pca(const Moments& m, Index k);

/// The linear autoencoder that encodes and reconstructs as `pca` does: code = W^T (x - mean),
/// reconstruction = W code + mean, with W the components.
ModelConfig pca_model_config(const PcaModel& pca);
/// Its parameters in the model's flat layout.
std::vector<float> pca_model_params(const PcaModel& pca);

}  // namespace aetrain
