// Our GEMM route against the plain Eigen product, for every transpose combination, awkward
// shapes, one and two threads, overwrite and accumulate.
#include <gtest/gtest.h>

#include <array>

#include "aetrain/gemm.hpp"

namespace aetrain {
namespace {

template <class S>
void check_products(int threads, double tolerance) {
  const std::array<Index, 3> shapes[] = {
      {1, 1, 1},     {3, 5, 7},     {17, 4, 33},   {64, 128, 96}, {300, 129, 257},
      {50, 10, 100}, {100, 10, 50}, {50, 100, 10}, {64, 16, 64},  {130, 7, 3},
      {5, 600, 40},  {1000, 3, 2},  {8, 8, 0}};
  for (auto [m, n, k] : shapes)
    for (Op op_a : {Op::none, Op::transpose})
      for (Op op_b : {Op::none, Op::transpose})
        for (bool accumulate : {false, true}) {
          Matrix<S> a = op_a == Op::none ? Matrix<S>::Random(m, k) : Matrix<S>::Random(k, m);
          Matrix<S> b = op_b == Op::none ? Matrix<S>::Random(k, n) : Matrix<S>::Random(n, k);
          Matrix<S> c0 = Matrix<S>::Random(m, n);
          Matrix<S> fast = c0, ref = c0;
          Gemm<S> gemm(threads);
          gemm.reserve(m, n, k);
          ConstMatrixMap<S> am(a.data(), a.rows(), a.cols()), bm(b.data(), b.rows(), b.cols());
          gemm(MatrixMap<S>(fast.data(), m, n), am, op_a, bm, op_b, accumulate);
          gemm_ref<S>(MatrixMap<S>(ref.data(), m, n), am, op_a, bm, op_b, accumulate);
          const double scale = std::max<double>(1.0, double(k));
          EXPECT_LE(double((fast - ref).cwiseAbs().maxCoeff()), tolerance * scale)
              << m << "x" << n << "x" << k << " op_a " << int(op_a) << " op_b " << int(op_b)
              << " accumulate " << accumulate << " threads " << threads;
        }
}

TEST(Gemm, MatchesEigenFloatOneThread) { check_products<float>(1, 1e-6); }
TEST(Gemm, MatchesEigenFloatTwoThreads) { check_products<float>(2, 1e-6); }
TEST(Gemm, MatchesEigenDoubleTwoThreads) { check_products<double>(2, 1e-14); }

// Each element is summed in the same order however the product is split over threads, so a
// run's results do not depend on its thread count (for every backend).
TEST(Gemm, SameBitsOnOneAndTwoThreads) {
  for (auto [m, n, k] : {std::array<Index, 3>{512, 128, 784}, {784, 128, 512}, {300, 7, 1000}})
    for (Op op_a : {Op::none, Op::transpose})
      for (Op op_b : {Op::none, Op::transpose}) {
        Matrix<float> a =
            op_a == Op::none ? Matrix<float>::Random(m, k) : Matrix<float>::Random(k, m);
        Matrix<float> b =
            op_b == Op::none ? Matrix<float>::Random(k, n) : Matrix<float>::Random(n, k);
        Matrix<float> one(m, n), two(m, n);
        for (auto [threads, c] : {std::pair{1, &one}, std::pair{2, &two}}) {
          Gemm<float> gemm(threads);
          gemm.reserve(m, n, k);
          gemm(MatrixMap<float>(c->data(), m, n),
               ConstMatrixMap<float>(a.data(), a.rows(), a.cols()), op_a,
               ConstMatrixMap<float>(b.data(), b.rows(), b.cols()), op_b, false);
        }
        EXPECT_TRUE(one == two) << m << "x" << n << "x" << k;
      }
}

TEST(Gemm, SmallerProductThanReservedStillExact) {
  // A short last batch: fewer columns than reserved for.
  Gemm<float> gemm(2);
  gemm.reserve(256, 128, 512);
  Matrix<float> a = Matrix<float>::Random(256, 512), b = Matrix<float>::Random(512, 7);
  Matrix<float> c(256, 7), ref(256, 7);
  gemm(MatrixMap<float>(c.data(), 256, 7), ConstMatrixMap<float>(a.data(), 256, 512), Op::none,
       ConstMatrixMap<float>(b.data(), 512, 7), Op::none, false);
  ref = a * b;
  EXPECT_LE((c - ref).cwiseAbs().maxCoeff(), 1e-4f);
}

TEST(Gemm, RefusesMismatchedShapes) {
  Gemm<float> gemm(1);
  gemm.reserve(4, 4, 4);
  Matrix<float> a(4, 3), b(4, 4), c(4, 4);
  EXPECT_THROW(gemm(MatrixMap<float>(c.data(), 4, 4), ConstMatrixMap<float>(a.data(), 4, 3),
                    Op::none, ConstMatrixMap<float>(b.data(), 4, 4), Op::none, false),
               std::logic_error);
}

}  // namespace
}  // namespace aetrain
