// Denoising's corruption (noise.hpp): the spellings, the mask's rate, the normal's moments, and
// that a row's noise depends on the seed, the epoch and the row alone.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "aetrain/noise.hpp"

using namespace aetrain;

namespace {

// `clean` corrupted, its columns the data rows `rows`.
Matrix<float> corrupted(const Noise& noise, uint64_t seed, int64_t epoch,
                        const std::vector<int64_t>& rows, const Matrix<float>& clean) {
  Matrix<float> out(clean.rows(), clean.cols());
  corrupt(noise, seed, epoch, rows.data(),
          ConstMatrixMap<float>(clean.data(), clean.rows(), clean.cols()),
          MatrixMap<float>(out.data(), out.rows(), out.cols()));
  return out;
}

std::vector<int64_t> first_rows(int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = i;
  return rows;
}

}  // namespace

TEST(Noise, Spellings) {
  EXPECT_EQ(parse_noise("none").kind, Noise::Kind::none);
  const Noise g = parse_noise("gaussian:0.25");
  EXPECT_EQ(g.kind, Noise::Kind::gaussian);
  EXPECT_EQ(g.amount, 0.25);
  const Noise m = parse_noise("mask:0.3");
  EXPECT_EQ(m.kind, Noise::Kind::mask);
  EXPECT_EQ(m.amount, 0.3);
  for (const char* bad : {"", "gauss:0.1", "gaussian", "gaussian:", "gaussian:0", "gaussian:-1",
                          "gaussian:0.1x", "gaussian:inf", "mask:0", "mask:1", "mask:-0.1",
                          "mask:abc", "mask 0.3", "Mask:0.3", "none:1"})
    EXPECT_THROW(parse_noise(bad), std::invalid_argument) << bad;
}

TEST(Noise, MaskZeroesAFractionWithinOnePercentOfP) {
  const int64_t cols = 97, n = 20000;  // about 2 million values
  const Matrix<float> ones = Matrix<float>::Constant(cols, n, 1.5f);
  for (double p : {0.05, 0.3, 0.75}) {
    const Matrix<float> y = corrupted({Noise::Kind::mask, p}, 1, 0, first_rows(n), ones);
    int64_t zeros = 0;
    for (Index i = 0; i < y.size(); ++i) {
      ASSERT_TRUE(y.data()[i] == 0.0f || y.data()[i] == 1.5f);  // kept values are untouched
      zeros += y.data()[i] == 0.0f;
    }
    const double rate = double(zeros) / double(y.size());
    EXPECT_NEAR(rate, p, 0.01 * p) << "P " << p;
  }
}

TEST(Noise, GaussianAddsStandardNormalsTimesSigma) {
  const int64_t cols = 33, n = 30000;  // an odd width: the last value of each row has no pair
  const double sigma = 0.2;
  const Matrix<float> x = Matrix<float>::Constant(cols, n, 0.5f);
  const Matrix<float> y = corrupted({Noise::Kind::gaussian, sigma}, 3, 2, first_rows(n), x);
  double sum = 0, sum2 = 0;
  int64_t within_one = 0, within_two = 0, last_within_one = 0;
  for (Index c = 0; c < y.cols(); ++c)
    for (Index r = 0; r < y.rows(); ++r) {
      const double z = (double(y(r, c)) - 0.5) / sigma;
      sum += z;
      sum2 += z * z;
      within_one += std::abs(z) < 1;
      within_two += std::abs(z) < 2;
      if (r == cols - 1) last_within_one += std::abs(z) < 1;
    }
  const double count = double(y.size()), mean = sum / count;
  const double sd = std::sqrt(sum2 / count - mean * mean);
  EXPECT_NEAR(mean, 0.0, 5 / std::sqrt(count));
  EXPECT_NEAR(sd, 1.0, 0.005);
  EXPECT_NEAR(double(within_one) / count, 0.682689, 0.003);  // P(|z| < 1), P(|z| < 2)
  EXPECT_NEAR(double(within_two) / count, 0.954500, 0.002);
  EXPECT_NEAR(double(last_within_one) / double(n), 0.682689, 0.015);
}

TEST(Noise, DependsOnTheSeedTheEpochAndTheRowAlone) {
  const int64_t cols = 8;
  Matrix<float> x(cols, 4);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = float(i) / 10;
  for (const Noise noise : {Noise{Noise::Kind::gaussian, 0.1}, Noise{Noise::Kind::mask, 0.5}}) {
    const std::vector<int64_t> rows = {5, 9000000000, 2, 77};
    const Matrix<float> a = corrupted(noise, 7, 3, rows, x);
    // The same rows in another order and batch: each row's values are the same.
    Matrix<float> swapped(cols, 2);
    swapped.col(0) = x.col(2);
    swapped.col(1) = x.col(0);
    const Matrix<float> b = corrupted(noise, 7, 3, {2, 5}, swapped);
    EXPECT_EQ(b.col(0), a.col(2));
    EXPECT_EQ(b.col(1), a.col(0));
    // Another epoch, seed or row index draws another noise.
    EXPECT_NE(corrupted(noise, 7, 4, rows, x), a);
    EXPECT_NE(corrupted(noise, 8, 3, rows, x), a);
    EXPECT_NE(corrupted(noise, 7, 3, {6, 9000000000, 2, 77}, x).col(0), a.col(0));
  }
}

TEST(Noise, TheSameOnAnyNumberOfThreads) {
  const int64_t cols = 300, n = 2000;  // enough work for a parallel region
  Matrix<float> x(cols, n);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = float(i % 101) / 100;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const Matrix<float> one = corrupted({Noise::Kind::gaussian, 0.3}, 1, 1, first_rows(n), x);
  omp_set_num_threads(3);
  const Matrix<float> three = corrupted({Noise::Kind::gaussian, 0.3}, 1, 1, first_rows(n), x);
  omp_set_num_threads(saved);
  EXPECT_EQ(one, three);
}
