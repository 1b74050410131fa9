// The one route for matrix products.
#pragma once

#include <string>
#include <type_traits>
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

/// Work on a finished block of a product's result, run by the thread that computed it while the
/// block is still in its cache: f(first row, rows, first column, columns). A reference to a
/// callable that must outlive the product (it is called before the product returns).
class Epilogue {
 public:
  Epilogue() = default;
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, Epilogue>)  // copies stay copies
  Epilogue(F& f)  // NOLINT: implicit, so that a lambda can be passed as is
      : object_(&f), call_([](void* o, Index r0, Index rows, Index c0, Index cols) {
          (*static_cast<F*>(o))(r0, rows, c0, cols);
        }) {}
  explicit operator bool() const { return call_ != nullptr; }
  void operator()(Index r0, Index rows, Index c0, Index cols) const {
    call_(object_, r0, rows, c0, cols);
  }

 private:
  void* object_ = nullptr;
  void (*call_)(void*, Index, Index, Index, Index) = nullptr;
};

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

  /// c (m,n) = op_a(a) (m,k) * op_b(b) (k,n), added to c instead when `accumulate`; then
  /// `epilogue` on every block of c, each once, as soon as it is final.
  void operator()(MatrixMap<S> c, ConstMatrixMap<S> a, Op op_a, ConstMatrixMap<S> b, Op op_b,
                  bool accumulate, Epilogue epilogue = {});

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
