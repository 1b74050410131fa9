#include "aetrain/moments.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <vector>

namespace aetrain {

Moments::Moments(Index d, Scatter kind)
    : mean(Eigen::VectorXd::Zero(d)),
      m2(Eigen::VectorXd::Zero(d)),
      min(Eigen::VectorXd::Constant(d, std::numeric_limits<double>::infinity())),
      max(Eigen::VectorXd::Constant(d, -std::numeric_limits<double>::infinity())),
      scatter(kind == Scatter::full ? Eigen::MatrixXd::Zero(d, d) : Eigen::MatrixXd()) {}

void Moments::add(ConstMatrixMap<double> x) {
  if (x.cols() == 0) return;
  Moments block(x.rows(), full() ? Scatter::full : Scatter::diagonal);
  block.rows = x.cols();
  block.mean = x.rowwise().mean();
  const Eigen::MatrixXd centred = x.colwise() - block.mean;
  block.m2 = centred.rowwise().squaredNorm();
  block.min = x.rowwise().minCoeff();
  block.max = x.rowwise().maxCoeff();
  if (full()) block.scatter.selfadjointView<Eigen::Lower>().rankUpdate(centred);
  merge(block);
}

void Moments::add(ConstMatrixMap<float> x) {
  const Eigen::MatrixXd xd = x.cast<double>();
  add(ConstMatrixMap<double>(xd.data(), xd.rows(), xd.cols()));
}

void Moments::add_sparse(int64_t n, std::span<const int64_t> cols, std::span<const double> values) {
  if (n == 0) return;
  if (full()) throw std::logic_error("Moments::add_sparse keeps diagonal moments only");
  const Index d = this->cols();
  Moments block(d, Scatter::diagonal);
  block.rows = n;
  std::vector<int64_t> count(size_t(d), 0);
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(d);
  for (size_t k = 0; k < cols.size(); ++k) {
    sum(cols[k]) += values[k];
    ++count[size_t(cols[k])];
    block.min(cols[k]) = std::min(block.min(cols[k]), values[k]);
    block.max(cols[k]) = std::max(block.max(cols[k]), values[k]);
  }
  block.mean = sum / double(n);
  // About the block's mean: the non-zeros, then the zeros (n - count of them).
  for (size_t k = 0; k < cols.size(); ++k) {
    const double v = values[k] - block.mean(cols[k]);
    block.m2(cols[k]) += v * v;
  }
  for (Index c = 0; c < d; ++c) {
    const double zeros = double(n - count[size_t(c)]);
    if (zeros == 0) continue;
    block.m2(c) += zeros * block.mean(c) * block.mean(c);
    block.min(c) = std::min(block.min(c), 0.0);
    block.max(c) = std::max(block.max(c), 0.0);
  }
  merge(block);
}

void Moments::merge(const Moments& other) {
  if (other.rows == 0) return;
  const double n = double(rows + other.rows);
  const Eigen::VectorXd delta = other.mean - mean;
  const double weight = double(rows) * double(other.rows) / n;
  m2 += other.m2 + weight * delta.cwiseAbs2();
  if (full()) {
    scatter.triangularView<Eigen::Lower>() += other.scatter;
    scatter.selfadjointView<Eigen::Lower>().rankUpdate(delta, weight);
  }
  min = min.cwiseMin(other.min);
  max = max.cwiseMax(other.max);
  mean += delta * (double(other.rows) / n);
  rows += other.rows;
}

Moments merge_over_ranks(const Moments& local, const Comm& comm) {
  // The global mean first; then every rank's second moments about it, summed (Chan et al.):
  // scatter about the global mean = local scatter + rows * delta delta^T.
  const Index d = local.cols();
  std::vector<double> sums(size_t(1 + d));
  sums[0] = double(local.rows);
  Eigen::Map<Eigen::VectorXd>(sums.data() + 1, d) = local.mean * double(local.rows);
  comm.allreduce_sum(std::span<double>(sums));
  Moments total(d, local.full() ? Scatter::full : Scatter::diagonal);
  total.rows = int64_t(sums[0]);
  total.mean = Eigen::Map<Eigen::VectorXd>(sums.data() + 1, d) / std::max(1.0, sums[0]);
  const Eigen::VectorXd delta = local.mean - total.mean;
  const double rows = double(local.rows);
  // One buffer for the second moments: m2 (d), then the scatter (d, d) when kept.
  std::vector<double> second(size_t(d + total.scatter.size()), 0.0);
  Eigen::Map<Eigen::VectorXd>(second.data(), d) = local.m2 + rows * delta.cwiseAbs2();
  if (local.full()) {
    Eigen::Map<Eigen::MatrixXd> s(second.data() + d, d, d);
    s = local.scatter.selfadjointView<Eigen::Lower>();
    s.noalias() += rows * delta * delta.transpose();
  }
  comm.allreduce_sum(std::span<double>(second));
  total.m2 = Eigen::Map<Eigen::VectorXd>(second.data(), d);
  if (local.full()) total.scatter = Eigen::Map<Eigen::MatrixXd>(second.data() + d, d, d);
  // The extremes in one reduction: min over ranks of (min, -max).
  std::vector<double> extremes(size_t(2 * d));
  Eigen::Map<Eigen::VectorXd>(extremes.data(), d) = local.min;
  Eigen::Map<Eigen::VectorXd>(extremes.data() + d, d) = -local.max;
  comm.allreduce_min(std::span<double>(extremes));
  total.min = Eigen::Map<Eigen::VectorXd>(extremes.data(), d);
  total.max = -Eigen::Map<Eigen::VectorXd>(extremes.data() + d, d);
  return total;
}

}  // namespace aetrain
