// Column moments and the normalization fitted from them, against direct computations in double.
#include <gtest/gtest.h>

#include <cmath>

#include "aetrain/moments.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/rng.hpp"

namespace aetrain {
namespace {

// (d, n) columns of very different scales and offsets, the kind physical units give; column 2
// is constant.
Eigen::MatrixXd physical(Index d, Index n, uint64_t seed) {
  SplitMix64 rng(seed);
  Eigen::MatrixXd x(d, n);
  for (Index r = 0; r < d; ++r)
    for (Index c = 0; c < n; ++c)
      x(r, c) = 1e4 * double(r) - 300.0 + std::pow(10.0, double(r % 6) - 2) * (rng.uniform() - 0.3);
  x.row(2).setConstant(273.15);
  return x;
}

Moments moments_of(const Eigen::MatrixXd& x, Scatter kind, Index parts) {
  Moments m(x.rows(), kind);
  const Index n = x.cols();
  for (Index p = 0; p < parts; ++p) {  // uneven blocks merged one after another
    const Index begin = n * p * p / (parts * parts), end = n * (p + 1) * (p + 1) / (parts * parts);
    m.add(ConstMatrixMap<double>(x.data() + begin * x.rows(), x.rows(), end - begin));
  }
  return m;
}

TEST(Moments, ColumnStatisticsMatchTheDefinitions) {
  const Eigen::MatrixXd x = physical(9, 257, 1);
  const Eigen::VectorXd mean = x.rowwise().mean();
  const Eigen::VectorXd m2 = (x.colwise() - mean).rowwise().squaredNorm();
  for (Scatter kind : {Scatter::diagonal, Scatter::full}) {
    const Moments m = moments_of(x, kind, 5);
    EXPECT_EQ(m.rows, 257);
    EXPECT_EQ(m.full(), kind == Scatter::full);
    for (Index c = 0; c < 9; ++c) {
      EXPECT_NEAR(m.mean(c), mean(c), 1e-12 * std::max(1.0, std::abs(mean(c)))) << c;
      EXPECT_NEAR(m.m2(c), m2(c), 1e-9 * m2(c) + 1e-18) << c;
      EXPECT_EQ(m.min(c), x.row(c).minCoeff());
      EXPECT_EQ(m.max(c), x.row(c).maxCoeff());
    }
  }
  const Moments full = moments_of(x, Scatter::full, 3);
  EXPECT_LE((full.scatter.diagonal() - full.m2).cwiseAbs().maxCoeff(), 1e-9 * full.m2.maxCoeff());
}

TEST(Normalization, StandardAndMinmaxFromTheMoments) {
  const Eigen::MatrixXd x = physical(7, 100, 2);
  const Moments m = moments_of(x, Scatter::diagonal, 4);
  int64_t constant = -1;
  const Normalization s = fit_normalization(NormalizeKind::standard, m, &constant);
  EXPECT_EQ(constant, 1);
  EXPECT_EQ(s.rows, 100);
  for (Index c = 0; c < 7; ++c) {
    const double mean = x.row(c).mean();
    const double std = std::sqrt((x.row(c).array() - mean).square().mean());  // numpy's std
    if (c != 2) {
      EXPECT_NEAR(s.offset(c), mean, 1e-12 * std::abs(mean));
    }
    if (c == 2) {  // constant: to exactly 0, not divided by (nearly) zero
      EXPECT_EQ(s.offset(c), 273.15);
      EXPECT_EQ(s.scale(c), 1.0);
    } else {
      EXPECT_NEAR(s.scale(c), std, 1e-9 * std);
    }
  }
  const Normalization mm = fit_normalization(NormalizeKind::minmax, m, &constant);
  EXPECT_EQ(constant, 1);
  EXPECT_EQ(mm.offset(4), x.row(4).minCoeff());
  EXPECT_EQ(mm.scale(4), x.row(4).maxCoeff() - x.row(4).minCoeff());
  EXPECT_EQ(mm.scale(2), 1.0);
  EXPECT_TRUE(fit_normalization(NormalizeKind::none, m).identity());
}

TEST(Normalization, AppliesInDoubleAndRestores) {
  const Eigen::MatrixXd x = physical(6, 50, 3);
  const Normalization n =
      fit_normalization(NormalizeKind::standard, moments_of(x, Scatter::diagonal, 1));
  Matrix<float> out(6, 50);
  normalize(n, ConstMatrixMap<double>(x.data(), 6, 50), MatrixMap<float>(out.data(), 6, 50));
  for (Index c = 0; c < 50; ++c)
    for (Index r = 0; r < 6; ++r) EXPECT_EQ(out(r, c), float((x(r, c) - n.offset(r)) / n.scale(r)));
  // Values near 1e5 with a spread of 0.01 keep their precision: float32 of the raw values would
  // not.
  Eigen::MatrixXd back(6, 50);
  denormalize(n, ConstMatrixMap<float>(out.data(), 6, 50), MatrixMap<double>(back.data(), 6, 50));
  for (Index r = 0; r < 6; ++r)
    EXPECT_LE((back.row(r) - x.row(r)).cwiseAbs().maxCoeff(), 1e-6 * n.scale(r)) << r;
  // The identity is a plain conversion.
  Matrix<float> same(6, 50);
  normalize(Normalization{}, ConstMatrixMap<double>(x.data(), 6, 50),
            MatrixMap<float>(same.data(), 6, 50));
  EXPECT_EQ(same, x.cast<float>());
}

TEST(Normalization, MomentsOfNormalizedRowsFollowExactly) {
  const Eigen::MatrixXd x = physical(5, 80, 4);
  const Moments m = moments_of(x, Scatter::full, 3);
  for (NormalizeKind kind : {NormalizeKind::standard, NormalizeKind::minmax}) {
    const Normalization n = fit_normalization(kind, m);
    const Eigen::MatrixXd xn = (x.colwise() - n.offset).array().colwise() / n.scale.array();
    const Moments direct = moments_of(xn, Scatter::full, 1);
    const Moments derived = normalized(m, n);
    EXPECT_LE((derived.mean - direct.mean).cwiseAbs().maxCoeff(), 1e-9);
    EXPECT_LE((derived.m2 - direct.m2).cwiseAbs().maxCoeff(), 1e-9 * direct.m2.maxCoeff());
    EXPECT_LE((derived.min - direct.min).cwiseAbs().maxCoeff(), 1e-9);
    EXPECT_LE((derived.max - direct.max).cwiseAbs().maxCoeff(), 1e-9);
    const Eigen::MatrixXd a = derived.scatter.selfadjointView<Eigen::Lower>();
    const Eigen::MatrixXd b = direct.scatter.selfadjointView<Eigen::Lower>();
    EXPECT_LE((a - b).cwiseAbs().maxCoeff(), 1e-9 * b.cwiseAbs().maxCoeff());
  }
}

TEST(Normalization, ValidateRefusesWhatCannotBeApplied) {
  Normalization n;
  n.kind = NormalizeKind::minmax;
  n.offset = Eigen::VectorXd::Zero(3);
  n.scale = Eigen::VectorXd::Ones(3);
  EXPECT_NO_THROW(validate(n, 3));
  EXPECT_THROW(validate(n, 4), std::invalid_argument);
  n.scale(1) = 0;
  EXPECT_THROW(validate(n, 3), std::invalid_argument);
  n.scale(1) = 1;
  n.offset(2) = std::nan("");
  EXPECT_THROW(validate(n, 3), std::invalid_argument);
  EXPECT_EQ(from_name<NormalizeKind>("minmax"), NormalizeKind::minmax);
  EXPECT_THROW(from_name<NormalizeKind>("zscore"), std::invalid_argument);
}

}  // namespace
}  // namespace aetrain
