// PCA: mergeable moments, the eigendecomposition against an SVD of the centred data, rank-k data
// reconstructed exactly, and the equivalent linear autoencoder.
#include <gtest/gtest.h>

#include <Eigen/SVD>

#include "aetrain/model.hpp"
#include "aetrain/pca.hpp"
#include "aetrain/rng.hpp"

namespace aetrain {
namespace {

// n rows of rank-`rank` data in d columns (plus `noise`), far from the origin: (d, n).
Matrix<float> low_rank(Index d, Index n, Index rank, double noise, uint64_t seed) {
  SplitMix64 rng(seed);
  Eigen::MatrixXd basis(d, rank), coeff(rank, n);
  for (Index i = 0; i < basis.size(); ++i) basis.data()[i] = rng.uniform() - 0.5;
  for (Index r = 0; r < rank; ++r)
    for (Index j = 0; j < n; ++j) coeff(r, j) = (rng.uniform() - 0.5) * double(rank - r);
  Eigen::MatrixXd x = basis * coeff;
  x.colwise() += Eigen::VectorXd::LinSpaced(d, 2.0, 5.0);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] += noise * (rng.uniform() - 0.5);
  return x.cast<float>();
}

Moments moments_of(const Matrix<float>& x) {
  Moments m(x.rows());
  m.add(ConstMatrixMap<float>(x.data(), x.rows(), x.cols()));
  return m;
}

TEST(Pca, MomentsMergeLikeOneBlock) {
  const Matrix<float> x = low_rank(7, 101, 3, 0.1, 1);
  const Moments whole = moments_of(x);
  Moments parts(7);
  const Index cuts[] = {0, 1, 40, 77, 101};  // blocks of 1, 39, 37 and 24 rows
  for (int i = 0; i < 4; ++i) {
    Moments block(7);
    block.add(ConstMatrixMap<float>(x.data() + cuts[i] * 7, 7, cuts[i + 1] - cuts[i]));
    parts.merge(block);
  }
  EXPECT_EQ(parts.rows, 101);
  EXPECT_LE((parts.mean - whole.mean).cwiseAbs().maxCoeff(), 1e-12);
  const Eigen::MatrixXd a = parts.scatter.selfadjointView<Eigen::Lower>();
  const Eigen::MatrixXd b = whole.scatter.selfadjointView<Eigen::Lower>();
  EXPECT_LE((a - b).cwiseAbs().maxCoeff(), 1e-9 * b.cwiseAbs().maxCoeff());
  // And the direct definition.
  const Eigen::MatrixXd xd = x.cast<double>();
  const Eigen::MatrixXd centred = xd.colwise() - xd.rowwise().mean();
  EXPECT_LE((a - centred * centred.transpose()).cwiseAbs().maxCoeff(),
            1e-9 * b.cwiseAbs().maxCoeff());
}

// Rows given by their non-zeros alone (in any order) have the moments of the same rows dense:
// zeros count in the mean, the spread and the extremes.
TEST(Pca, SparseRowsHaveTheMomentsOfTheirDenseForm) {
  SplitMix64 rng(5);
  const Index d = 9, n = 60;
  Eigen::MatrixXd x = Eigen::MatrixXd::Zero(d, n);
  std::vector<int64_t> cols;
  std::vector<double> values;
  for (Index j = n - 1; j >= 0; --j)  // rows backwards, their values out of column order
    for (Index c = d - 1; c >= 0; --c) {
      if (c == 4 || rng.uniform() < 0.6) continue;                    // column 4 stays all zeros
      x(c, j) = c == 7 ? -1.0 - rng.uniform() : 1e3 + rng.uniform();  // 7: below 0
      cols.push_back(c);
      values.push_back(x(c, j));
    }
  for (Index j = 0; j < n; ++j) {  // column 8 is never 0: no zero to count
    if (x(8, j) != 0) continue;
    x(8, j) = 2.0;
    cols.push_back(8);
    values.push_back(2.0);
  }
  Moments dense(d, Scatter::diagonal), sparse(d, Scatter::diagonal);
  dense.add(ConstMatrixMap<double>(x.data(), d, 25));
  dense.add(ConstMatrixMap<double>(x.data() + 25 * d, d, n - 25));
  sparse.add_sparse(n, cols, values);
  EXPECT_EQ(sparse.rows, n);
  EXPECT_LE((sparse.mean - dense.mean).cwiseAbs().maxCoeff(), 1e-12 * 1e3);
  EXPECT_LE((sparse.m2 - dense.m2).cwiseAbs().maxCoeff(), 1e-9 * dense.m2.maxCoeff());
  EXPECT_EQ(sparse.min, dense.min);
  EXPECT_EQ(sparse.max, dense.max);
  EXPECT_EQ(sparse.min(4), 0.0);
  EXPECT_EQ(sparse.max(7), 0.0);
  EXPECT_GT(sparse.min(8), 0.0);
  Moments full(d);
  EXPECT_THROW(full.add_sparse(n, cols, values), std::logic_error);
}

TEST(Pca, MatchesTheSvdOfTheCentredData) {
  const Matrix<float> x = low_rank(12, 300, 6, 0.05, 2);
  const PcaModel pca = fit_pca(moments_of(x), 4);
  const Eigen::MatrixXd xd = x.cast<double>();
  const Eigen::MatrixXd centred = (xd.colwise() - xd.rowwise().mean()).transpose();  // (n, d)
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(centred, Eigen::ComputeThinV);
  for (Index c = 0; c < 4; ++c) {
    const double variance = svd.singularValues()(c) * svd.singularValues()(c) / 299.0;
    EXPECT_NEAR(pca.explained_variance(c), variance, 1e-9 * variance);
    const double same_axis = std::abs(pca.components.col(c).dot(svd.matrixV().col(c)));
    EXPECT_NEAR(same_axis, 1.0, 1e-9) << "component " << c;
  }
  EXPECT_NEAR(pca.total_variance, svd.singularValues().squaredNorm() / 299.0, 1e-9);
}

TEST(Pca, ComponentsOrthonormalSortedAndSigned) {
  const PcaModel pca = fit_pca(moments_of(low_rank(20, 200, 8, 0.1, 3)), 6);
  EXPECT_LE((pca.components.transpose() * pca.components - Eigen::MatrixXd::Identity(6, 6))
                .cwiseAbs()
                .maxCoeff(),
            1e-12);
  for (Index c = 1; c < 6; ++c) EXPECT_GE(pca.explained_variance(c - 1), pca.explained_variance(c));
  for (Index c = 0; c < 6; ++c) {
    Index largest = 0;
    pca.components.col(c).cwiseAbs().maxCoeff(&largest);
    EXPECT_GT(pca.components(largest, c), 0.0);
  }
  EXPECT_LE(pca.explained_variance.sum(), pca.total_variance);
}

TEST(Pca, RankKDataIsReconstructedExactlyByTheLinearAutoencoder) {
  const Index d = 16, n = 64, k = 3;
  const Matrix<float> x = low_rank(d, n, k, 0.0, 4);
  const PcaModel pca = fit_pca(moments_of(x), k);
  const ModelConfig config = pca_model_config(pca);
  EXPECT_EQ(config.encoder_widths, (std::vector<int64_t>{k}));
  EXPECT_EQ(config.output_activation, Activation::linear);
  Autoencoder<float> net(config, n, 1);
  const std::vector<float> params = pca_model_params(pca);
  std::copy(params.begin(), params.end(), net.params().begin());
  const double loss = net.forward(ConstMatrixMap<float>(x.data(), d, n));
  EXPECT_LE((net.output() - x).cwiseAbs().maxCoeff(), 1e-5 * x.cwiseAbs().maxCoeff());
  EXPECT_LE(loss / double(n), 1e-10);
  // Codes are the coordinates along the components: W^T (x - mean).
  const Eigen::MatrixXd codes =
      pca.components.transpose() * (x.cast<double>().colwise() - pca.mean);
  const Matrix<float> ours = net.encode(ConstMatrixMap<float>(x.data(), d, n));
  EXPECT_LE((ours.cast<double>() - codes).cwiseAbs().maxCoeff(), 1e-5);
}

TEST(Pca, RefusesImpossibleRequests) {
  const Moments m = moments_of(low_rank(5, 10, 2, 0.1, 5));
  EXPECT_THROW(fit_pca(m, 0), std::invalid_argument);
  EXPECT_THROW(fit_pca(m, 6), std::invalid_argument);
  EXPECT_THROW(fit_pca(moments_of(low_rank(5, 1, 1, 0.0, 6)), 1), std::invalid_argument);
}

}  // namespace
}  // namespace aetrain
