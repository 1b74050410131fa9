// The one route for matrix products, and the matrix types everything else uses.
#pragma once

#include <Eigen/Core>
#include <vector>

namespace aetrain {

using Eigen::Index;

// Column-major throughout: one sample per column, so a row-major N x D block read from HDF5
// is byte-for-byte a D x N matrix here and is never transposed.
template <class S>
using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
template <class S>
using MatrixMap = Eigen::Map<Matrix<S>>;
template <class S>
using ConstMatrixMap = Eigen::Map<const Matrix<S>>;
template <class S>
using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;
template <class S>
using VectorMap = Eigen::Map<Vector<S>>;
template <class S>
using ConstVectorMap = Eigen::Map<const Vector<S>>;

/// A std::vector on Eigen's SIMD alignment. Flat buffers use it so that every run, rank and
/// replica splits vectorized loops at the same places: Eigen handles an unaligned head with
/// scalar code, and a different split can change the last bits of a result.
template <class S>
using AlignedVector = std::vector<S, Eigen::aligned_allocator<S>>;

/// How a product operand is used: as stored, or transposed.
enum class Op { none, transpose };

/// C = op(A) op(B) (+ C) with Eigen's packed GEMM kernel, split over OpenMP threads by us, and
/// packing buffers allocated once by `reserve`. Eigen's own `noalias()` products allocate their
/// packing buffers on every call above 128 KiB; this keeps a training step free of allocation.
/// Large products go through here so that a BLAS backend can be swapped in at one place.
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
