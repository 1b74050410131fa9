// The one route for matrix products.
#pragma once

#include <string>
#include <vector>

#include "aetrain/matrix.hpp"

namespace aetrain {

/// The kernel behind Gemm and the vector instructions it was compiled for, e.g.
/// "Eigen 3.4.0 packed kernel (AVX2, FMA, SSE...)".
std::string gemm_backend();

/// Products of fewer multiply-adds than this take Eigen's kernel on one thread whatever the
/// backend: a library call (BLIS starts its thread team on every call) costs more than they do.
/// The choice depends on the shape alone, so it is the same at every step of a run.
inline constexpr long long kBackendMinWork = 65536;

/// How a product operand is used: as stored, or transposed.
enum class Op { none, transpose };

/// C = op(A) op(B) (+ C): the one route for the model's products. The backend is chosen at
/// build time (CMake's AETRAIN_GEMM): `blis` sends products of at least kBackendMinWork
/// multiply-adds to BLIS, on as many threads as the product deserves; `eigen` (and every
/// smaller product) runs Eigen's packed kernel, split over OpenMP threads by us, with packing
/// buffers allocated once by `reserve` (Eigen's own `noalias()` products allocate them on every
/// call above 128 KiB). Either way a training step allocates nothing.
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
