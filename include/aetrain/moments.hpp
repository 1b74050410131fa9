// Column statistics of a set of rows that merge exactly: blocks and ranks can be combined in any
// grouping. The normalization statistics and the PCA both come from here.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <span>

#include "aetrain/comm.hpp"
#include "aetrain/matrix.hpp"

namespace aetrain {

/// Which second moments to keep: per column only, or the whole (d, d) scatter matrix.
enum class Scatter { diagonal, full };

/// Row count, mean, sum of squared deviations, minimum and maximum of each column, and (for
/// Scatter::full) the centred scatter sum((x - mean)(x - mean)^T), all in double. Two sets merge
/// exactly (Chan, Golub and LeVeque, "Updating formulae and a pairwise algorithm for computing
/// sample variances", 1979), without the cancellation of sum(x^2) - n mean^2.
struct Moments {
  int64_t rows = 0;
  Eigen::VectorXd mean;      // (d)
  Eigen::VectorXd m2;        // (d): sum((x - mean)^2), the scatter's diagonal
  Eigen::VectorXd min, max;  // (d): +inf and -inf while empty
  Eigen::MatrixXd scatter;   // (d, d), lower triangle kept up to date; (0, 0) for diagonal

  explicit Moments(Index d, Scatter kind = Scatter::full);
  Index cols() const { return mean.size(); }
  bool full() const { return scatter.size() > 0; }
  /// Adds the samples x (d, n).
  void add(ConstMatrixMap<double> x);
  void add(ConstMatrixMap<float> x);
  /// Adds `rows` samples given by their non-zero values alone: `values[k]` in column `cols[k]`
  /// (any order; every other value of the rows is 0). Diagonal moments only.
  void add_sparse(int64_t rows, std::span<const int64_t> cols, std::span<const double> values);
  /// Adds another set's moments (of the same kind).
  void merge(const Moments& other);
};

/// The moments of the union of every rank's rows: the same result on every rank. Collective.
Moments merge_over_ranks(const Moments& local, const Comm& comm);

}  // namespace aetrain
