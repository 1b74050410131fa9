#include "aetrain/gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <stdexcept>

namespace aetrain {

std::string gemm_backend() {
  // Eigen's own SimdInstructionSetsInUse() does not name AVX2 or FMA.
  const char* simd =
#if defined(__AVX512F__)
      "AVX-512, FMA";
#elif defined(__AVX2__) && defined(__FMA__)
      "AVX2, FMA";
#elif defined(__AVX__)
      "AVX";
#elif defined(__SSE2__)
      "SSE2";
#elif defined(__ARM_NEON)
      "NEON";
#else
      "no vector instructions";
#endif
  return "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
         "." + std::to_string(EIGEN_MINOR_VERSION) + " packed kernel, compiled for " + simd;
}

namespace {

// Below this many multiply-adds per thread, a parallel region costs more than it saves
// (the same threshold Eigen's own parallel GEMM uses).
constexpr double kMinWorkPerThread = 50000.0;

// Eigen's level-3 blocking, pointed at our preallocated packing buffers.
template <class S>
struct OwnedBlocking : Eigen::internal::level3_blocking<S, S> {
  OwnedBlocking(S* a, S* b, Index kc, Index mc, Index nc) {
    this->m_blockA = a;
    this->m_blockB = b;
    this->m_kc = kc;
    this->m_mc = mc;
    this->m_nc = nc;
  }
};

struct BlockSizes {
  Index kc, mc, nc;
};

// Eigen's cache-based choice for an m x n x k product.
template <class S>
BlockSizes block_sizes(Index m, Index n, Index k) {
  BlockSizes s{k, m, n};
  Eigen::internal::computeProductBlockingSizes<S, S, 1, Index>(s.kc, s.mc, s.nc, 1);
  return s;
}

// How many threads an m x n x k product deserves, and the slice each gets.
struct Split {
  int threads;
  bool by_rows;  // split the result's rows (else its columns)
  Index chunk;   // rows or columns per thread
};

Split split_for(Index m, Index n, Index k, int max_threads) {
  const double work = double(m) * double(n) * double(k);
  int t = std::max(1, std::min(max_threads, int(work / kMinWorkPerThread)));
  const bool by_rows = m >= n;
  const Index extent = by_rows ? m : n;
  const Index align = by_rows ? 16 : 4;  // whole register blocks of Eigen's kernel
  Index chunk = (extent + t - 1) / t;
  chunk = (chunk + align - 1) / align * align;
  t = int((extent + chunk - 1) / chunk);
  return {t, by_rows, chunk};
}

// c (m,n) += op(a) (m,k) op(b) (k,n) on raw column-major storage, one thread.
template <class S, int LhsOrder, int RhsOrder>
void kernel(Index m, Index n, Index k, const S* a, Index lda, const S* b, Index ldb, S* c,
            Index ldc, OwnedBlocking<S>& blocking) {
  Eigen::internal::general_matrix_matrix_product<Index, S, LhsOrder, false, S, RhsOrder, false,
                                                 Eigen::ColMajor, 1>::run(m, n, k, a, lda, b, ldb,
                                                                          c, 1, ldc, S(1),
                                                                          blocking, nullptr);
}

}  // namespace

template <class S>
Gemm<S>::Gemm(int threads) : threads_(std::max(1, threads)), pack_a_(threads_), pack_b_(threads_) {}

template <class S>
void Gemm<S>::reserve(Index m, Index n, Index k) {
  for (int t = 1; t <= threads_; ++t) {  // whatever split a product of this size gets
    const Split sp = split_for(m, n, k, t);
    const BlockSizes b = sp.by_rows ? block_sizes<S>(std::min(m, sp.chunk), n, k)
                                    : block_sizes<S>(m, std::min(n, sp.chunk), k);
    capacity_a_ = std::max(capacity_a_, b.kc * b.mc);
    capacity_b_ = std::max(capacity_b_, b.kc * b.nc);
  }
  for (int t = 0; t < threads_; ++t) {
    if (pack_a_[t].size() < capacity_a_) pack_a_[t].resize(capacity_a_);
    if (pack_b_[t].size() < capacity_b_) pack_b_[t].resize(capacity_b_);
  }
}

template <class S>
void Gemm<S>::operator()(MatrixMap<S> c, ConstMatrixMap<S> a, Op op_a, ConstMatrixMap<S> b,
                         Op op_b, bool accumulate) {
  const Index m = c.rows(), n = c.cols();
  const Index k = op_a == Op::none ? a.cols() : a.rows();
  const Index a_rows = op_a == Op::none ? a.rows() : a.cols();
  const Index b_rows = op_b == Op::none ? b.rows() : b.cols();
  const Index b_cols = op_b == Op::none ? b.cols() : b.rows();
  if (a_rows != m || b_rows != k || b_cols != n) throw std::logic_error("gemm: shapes differ");
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) c.setZero();
    return;
  }
  if (capacity_a_ == 0) throw std::logic_error("gemm: reserve() was not called");
  const Split sp = split_for(m, n, k, threads_);
  const Index lda = a.rows(), ldb = b.rows(), ldc = m;

  auto slice = [&](int t) {
    const Index lo = std::min(t * sp.chunk, sp.by_rows ? m : n);
    const Index hi = std::min(lo + sp.chunk, sp.by_rows ? m : n);
    if (lo == hi) return;
    const Index mt = sp.by_rows ? hi - lo : m, nt = sp.by_rows ? n : hi - lo;
    // Where this thread's slice starts in each operand (a transposed operand is a row-major view).
    const S* at = a.data() + (sp.by_rows ? (op_a == Op::none ? lo : lo * lda) : 0);
    const S* bt = b.data() + (sp.by_rows ? 0 : (op_b == Op::none ? lo * ldb : lo));
    S* ct = c.data() + (sp.by_rows ? lo : lo * ldc);
    if (!accumulate) {
      for (Index j = 0; j < nt; ++j) std::fill_n(ct + j * ldc, mt, S(0));
    }
    BlockSizes bs = block_sizes<S>(mt, nt, k);
    // Never outgrow the reserved room: a smaller block is slower, not wrong.
    bs.kc = std::min(bs.kc, std::max<Index>(1, std::min(capacity_a_, capacity_b_)));
    bs.mc = std::max<Index>(1, std::min(bs.mc, capacity_a_ / bs.kc));
    bs.nc = std::max<Index>(1, std::min(bs.nc, capacity_b_ / bs.kc));
    OwnedBlocking<S> blocking(pack_a_[t].data(), pack_b_[t].data(), bs.kc, bs.mc, bs.nc);
    constexpr int col = Eigen::ColMajor, row = Eigen::RowMajor;
    if (op_a == Op::none && op_b == Op::none)
      kernel<S, col, col>(mt, nt, k, at, lda, bt, ldb, ct, ldc, blocking);
    else if (op_a == Op::none)
      kernel<S, col, row>(mt, nt, k, at, lda, bt, ldb, ct, ldc, blocking);
    else if (op_b == Op::none)
      kernel<S, row, col>(mt, nt, k, at, lda, bt, ldb, ct, ldc, blocking);
    else
      kernel<S, row, row>(mt, nt, k, at, lda, bt, ldb, ct, ldc, blocking);
  };

  if (sp.threads == 1) {
    slice(0);
  } else {
#pragma omp parallel num_threads(sp.threads)
    slice(omp_get_thread_num());
  }
}

template <class S>
void gemm_ref(MatrixMap<S> c, ConstMatrixMap<S> a, Op op_a, ConstMatrixMap<S> b, Op op_b,
              bool accumulate) {
  Matrix<S> lhs = op_a == Op::none ? Matrix<S>(a) : Matrix<S>(a.transpose());
  Matrix<S> rhs = op_b == Op::none ? Matrix<S>(b) : Matrix<S>(b.transpose());
  if (accumulate)
    c += lhs * rhs;
  else
    c = lhs * rhs;
}

template class Gemm<float>;
template class Gemm<double>;
template void gemm_ref<float>(MatrixMap<float>, ConstMatrixMap<float>, Op, ConstMatrixMap<float>,
                              Op, bool);
template void gemm_ref<double>(MatrixMap<double>, ConstMatrixMap<double>, Op,
                               ConstMatrixMap<double>, Op, bool);

}  // namespace aetrain
