// The one route for matrix products.
#pragma once

#include <string>
#include <vector>

#include "aetrain/matrix.hpp"

namespace aetrain {

/// The kernel behind Gemm and the vector instructions it was compiled for, e.g.
/// "Eigen 3.4.0 packed kernel (AVX2, FMA, SSE...)".
std::string gemm_backend();

/// Products of fewer multiply-adds than this run on one thread without packing (our direct
/// kernel, or Eigen's when B is transposed): packing and threads cost more than they save. The
/// choice depends on the shape and form alone, so it is the same at every step of a run.
inline constexpr long long kBackendMinWork = 65536;

/// How a product operand is used: as stored, or transposed.
enum class Op { none, transpose };

/// C = op(A) op(B) (+ C): the one route for the model's products. Products of fewer than
/// kBackendMinWork multiply-adds whose B is used as stored run our own unpacked kernel on one
/// thread. Larger ones take the backend chosen at build time (CMake's AETRAIN_GEMM): `blis`
/// runs BLIS's micro-kernel for the CPU, `eigen` Eigen's packed kernel, either split over
/// OpenMP threads by us, with packing buffers allocated once by `reserve` (Eigen's own
/// `noalias()` products allocate them on every call above 128 KiB). A training step allocates
/// nothing, and no thread count changes a result's bits.
template <class S>
class Gemm {
 public:
  /// Room for up to `threads` OpenMP threads per product.
  explicit Gemm(int threads = 1);

  /// Makes room for products with an m x n result and inner dimension k (not during a step).
  void reserve(Index m, Index n, Index k);

  /// c (m,n) = op_a(a) (m,k) * op_b(b) (k,n), added to c instead when `accumulate`.
  void operator()(MatrixMap<S> c, ConstMatrixMap<S> a, Op op_a, ConstMatrixMap<S> b, Op op_b,
                  bool accumulate);

  int threads() const { return threads_; }

 private:
  int threads_;
  Index capacity_a_ = 0;  // packing room per thread, in scalars
  Index capacity_b_ = 0;
  std::vector<Vector<S>> pack_a_;  // one per thread, Eigen-aligned
  std::vector<Vector<S>> pack_b_;
};

/// Reference twin of Gemm: the plain Eigen expression, for tests.
template <class S>
void gemm_ref(MatrixMap<S> c, ConstMatrixMap<S> a, Op op_a, ConstMatrixMap<S> b, Op op_b,
              bool accumulate);

}  // namespace aetrain
