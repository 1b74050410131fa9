// The count transform (transform.hpp) on small rows worked by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "aetrain/transform.hpp"

namespace aetrain {
namespace {

ConstMatrixMap<double> in(const Matrix<double>& x) { return {x.data(), x.rows(), x.cols()}; }
MatrixMap<double> to(Matrix<double>& x) { return {x.data(), x.rows(), x.cols()}; }

// Rows of 4 columns, one per matrix column.
Matrix<double> rows(std::initializer_list<std::initializer_list<double>> values) {
  Matrix<double> x(4, Index(values.size()));
  Index r = 0;
  for (const auto& row : values) {
    Index c = 0;
    for (double v : row) x(c++, r) = v;
    ++r;
  }
  return x;
}

TEST(Transform, SizeFactorThenLog1pThenColumns) {
  RowTransform t;
  t.asked = {.size_factor = 100, .scale = CountScale::log1p, .features = ""};
  t.stored_cols = 4;
  t.columns = {1, 3};
  const Matrix<double> x = rows({{1, 3, 0, 6}, {0, 0, 0, 0}, {2, 0, 0, 0}});
  Matrix<double> out(2, 3);
  const TransformCheck check = apply(t, in(x), to(out));
  EXPECT_EQ(check.bad_row, -1);
  EXPECT_EQ(check.zero_total, 1);  // the second row, kept as zeros
  EXPECT_DOUBLE_EQ(out(0, 0), std::log1p(3.0 * 100 / 10));
  EXPECT_DOUBLE_EQ(out(1, 0), std::log1p(6.0 * 100 / 10));
  EXPECT_EQ(out(0, 1), 0.0);
  EXPECT_EQ(out(1, 1), 0.0);
  EXPECT_EQ(out(0, 2), 0.0);  // the total counts every stored column, kept or not
  EXPECT_EQ(t.cols(), 2);
  EXPECT_EQ(describe(t), "size factor 100, log1p, 2 of 4 columns");
}

TEST(Transform, EveryColumnWithoutFeatures) {
  RowTransform t;
  t.asked.scale = CountScale::log1p;
  t.stored_cols = 4;
  const Matrix<double> x = rows({{0, 1, 2, 3}});
  Matrix<double> out(4, 1);
  apply(t, in(x), to(out));
  for (Index c = 0; c < 4; ++c) EXPECT_DOUBLE_EQ(out(c, 0), std::log1p(double(c)));
  EXPECT_FALSE(t.identity());
  EXPECT_TRUE(RowTransform{}.identity());
  EXPECT_EQ(describe(RowTransform{}), "none");
}

TEST(Transform, ANegativeCountStopsAtItsRowAndColumn) {
  RowTransform t;
  t.asked.size_factor = 10;
  t.stored_cols = 4;
  const Matrix<double> x = rows({{1, 2, 3, 4}, {1, 0, -2, 5}});
  Matrix<double> out(4, 2);
  const TransformCheck check = apply(t, in(x), to(out));
  EXPECT_EQ(check.bad_row, 1);
  EXPECT_EQ(check.bad_col, 2);
}

}  // namespace
}  // namespace aetrain
