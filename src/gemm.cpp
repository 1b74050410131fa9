#include "aetrain/gemm.hpp"

#include "aetrain/error.hpp"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>

#if defined(AETRAIN_GEMM_BLIS)
#include <blis.h>
#endif

namespace aetrain {

namespace {

const char* compiled_simd() {
  // Eigen's own SimdInstructionSetsInUse() does not name AVX2 or FMA.
  return
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
}

}  // namespace

namespace {

// Below this many multiply-adds per thread, a parallel region costs more than it saves
// (the same threshold Eigen's own parallel GEMM uses).
constexpr double kMinWorkPerThread = 50000.0;

// Eigen's packed kernel is reached through its internal entry points (level3_blocking,
// computeProductBlockingSizes, general_matrix_matrix_product, packet_traits), which are not a
// public API and change between releases: checked against 3.4 (Debian 12 and 13 ship 3.4.0).
#if !EIGEN_VERSION_AT_LEAST(3, 4, 0) || EIGEN_VERSION_AT_LEAST(3, 4, 90)
#error \
    "src/gemm.cpp calls Eigen 3.4's internal GEMM entry points; check them against this Eigen before building with it"
#endif

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

template <class S>
Split split_for(Index m, Index n, Index k, int max_threads) {
  const double work = double(m) * double(n) * double(k);
  int t = std::max(1, std::min(max_threads, int(work / kMinWorkPerThread)));
  const bool by_rows = m >= n;
  const Index extent = by_rows ? m : n;
  // Whole register blocks of Eigen's kernel (3 packets of rows, 4 columns): each row and column
  // then meets the same code, so the same summation order, however the product is split.
  const Index align = by_rows ? 3 * Eigen::internal::packet_traits<S>::size : 4;
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
                                                                          c, 1, ldc, S(1), blocking,
                                                                          nullptr);
}

// Small products: straight from the operands, no packing. Below kBackendMinWork multiply-adds
// packing costs as much as the product (Eigen's packed kernel spent a fifth of the model card's
// product time packing, and a zeroing pass before every overwrite). One thread; every element
// is summed in one fixed order for its shape.
namespace direct {

namespace ei = Eigen::internal;
template <class S>
using Packet = typename ei::packet_traits<S>::type;
template <class S>
constexpr Index kLanes = ei::unpacket_traits<Packet<S>>::size;

// c (RP packets of rows x NC columns) = [c +] a b, a column-major (lda), b(p, j) = b[p rb + j cb]:
// a column of a times a broadcast element of b, k times. Every element sums its k products in
// order, whatever tile it falls in.
template <class S, int RP, int NC>
void axpy_tile(Index k, const S* a, Index lda, const S* b, Index rb, Index cb, S* c, Index ldc,
               bool accumulate) {
  using P = Packet<S>;
  constexpr Index L = kLanes<S>;
  P acc[RP][NC];
  for (int j = 0; j < NC; ++j)
    for (int r = 0; r < RP; ++r)
      acc[r][j] = accumulate ? ei::ploadu<P>(c + r * L + j * ldc) : ei::pset1<P>(S(0));
  for (Index p = 0; p < k; ++p) {
    P av[RP];
    for (int r = 0; r < RP; ++r) av[r] = ei::ploadu<P>(a + p * lda + r * L);
    for (int j = 0; j < NC; ++j) {
      const P bj = ei::pset1<P>(b[p * rb + j * cb]);
      for (int r = 0; r < RP; ++r) acc[r][j] = ei::pmadd(av[r], bj, acc[r][j]);
    }
  }
  for (int j = 0; j < NC; ++j)
    for (int r = 0; r < RP; ++r) ei::pstoreu(c + r * L + j * ldc, acc[r][j]);
}

// The last `rows` (< kLanes) rows when m >= kLanes: a whole packet ending at row m, computed
// before the other tiles write c, of which only the last `rows` are stored. The rows it covers
// twice get the same bits both times (the same packet arithmetic in the same order).
template <class S, int NC>
void axpy_last_rows(Index rows, Index k, const S* a, Index lda, const S* b, Index rb, Index cb,
                    S* c, Index ldc, bool accumulate) {
  using P = Packet<S>;
  constexpr Index L = kLanes<S>;
  const Index skip = L - rows;
  P acc[NC];
  for (int j = 0; j < NC; ++j)
    acc[j] = accumulate ? ei::ploadu<P>(c - skip + j * ldc) : ei::pset1<P>(S(0));
  for (Index p = 0; p < k; ++p) {
    const P av = ei::ploadu<P>(a - skip + p * lda);
    for (int j = 0; j < NC; ++j) acc[j] = ei::pmadd(av, ei::pset1<P>(b[p * rb + j * cb]), acc[j]);
  }
  alignas(64) S out[L];
  for (int j = 0; j < NC; ++j) {
    ei::pstoreu(out, acc[j]);
    std::copy_n(out + skip, rows, c + j * ldc);
  }
}

// All m rows in scalars (m < kLanes), NC columns at a time.
template <class S, int NC>
void axpy_narrow(Index m, Index k, const S* a, Index lda, const S* b, Index rb, Index cb, S* c,
                 Index ldc, bool accumulate) {
  S acc[kLanes<S>][NC];
  for (int j = 0; j < NC; ++j)
    for (Index r = 0; r < m; ++r) acc[r][j] = accumulate ? c[r + j * ldc] : S(0);
  for (Index p = 0; p < k; ++p)
    for (int j = 0; j < NC; ++j) {
      const S bj = b[p * rb + j * cb];
      for (Index r = 0; r < m; ++r) acc[r][j] += a[p * lda + r] * bj;
    }
  for (int j = 0; j < NC; ++j)
    for (Index r = 0; r < m; ++r) c[r + j * ldc] = acc[r][j];
}

template <class S, int NC>
void axpy_columns(Index m, Index k, const S* a, Index lda, const S* b, Index rb, Index cb, S* c,
                  Index ldc, bool accumulate) {
  constexpr Index L = kLanes<S>;
  if (m < L) return axpy_narrow<S, NC>(m, k, a, lda, b, rb, cb, c, ldc, accumulate);
  const Index whole = m / L * L;
  if (whole < m)
    axpy_last_rows<S, NC>(m - whole, k, a + whole, lda, b, rb, cb, c + whole, ldc, accumulate);
  Index i = 0;
  for (; i + 3 * L <= whole; i += 3 * L)
    axpy_tile<S, 3, NC>(k, a + i, lda, b, rb, cb, c + i, ldc, accumulate);
  for (; i < whole; i += L) axpy_tile<S, 1, NC>(k, a + i, lda, b, rb, cb, c + i, ldc, accumulate);
}

// c (m,n) = [c +] a (m,k) b (k,n): a column-major, b through strides.
template <class S>
void axpy_product(Index m, Index n, Index k, const S* a, Index lda, const S* b, Index rb, Index cb,
                  S* c, Index ldc, bool accumulate) {
  for (Index j = 0; j < n; j += 4) {
    const S* bj = b + j * cb;
    S* cj = c + j * ldc;
    switch (std::min<Index>(4, n - j)) {
      case 4: axpy_columns<S, 4>(m, k, a, lda, bj, rb, cb, cj, ldc, accumulate); break;
      case 3: axpy_columns<S, 3>(m, k, a, lda, bj, rb, cb, cj, ldc, accumulate); break;
      case 2: axpy_columns<S, 2>(m, k, a, lda, bj, rb, cb, cj, ldc, accumulate); break;
      default: axpy_columns<S, 1>(m, k, a, lda, bj, rb, cb, cj, ldc, accumulate); break;
    }
  }
}

// c (RM x NC) = [c +] a^T b with a (k, m) and b (k, n) column-major: dot products of columns,
// a packet of k at a time, then the packet's lanes summed and the last k % kLanes added.
template <class S, int RM, int NC>
void dot_tile(Index k, const S* a, Index lda, const S* b, Index ldb, S* c, Index ldc,
              bool accumulate) {
  using P = Packet<S>;
  constexpr Index L = kLanes<S>;
  P acc[RM][NC];
  for (int i = 0; i < RM; ++i)
    for (int j = 0; j < NC; ++j) acc[i][j] = ei::pset1<P>(S(0));
  const Index whole = k / L * L;
  for (Index p = 0; p < whole; p += L) {
    P av[RM];
    for (int i = 0; i < RM; ++i) av[i] = ei::ploadu<P>(a + i * lda + p);
    for (int j = 0; j < NC; ++j) {
      const P bj = ei::ploadu<P>(b + j * ldb + p);
      for (int i = 0; i < RM; ++i) acc[i][j] = ei::pmadd(av[i], bj, acc[i][j]);
    }
  }
  for (int i = 0; i < RM; ++i)
    for (int j = 0; j < NC; ++j) {
      S sum = ei::predux(acc[i][j]);
      for (Index p = whole; p < k; ++p) sum += a[i * lda + p] * b[j * ldb + p];
      S& out = c[i + j * ldc];
      out = accumulate ? out + sum : sum;
    }
}

template <class S, int NC>
void dot_columns(Index m, Index k, const S* a, Index lda, const S* b, Index ldb, S* c, Index ldc,
                 bool accumulate) {
  Index i = 0;
  for (; i + 3 <= m; i += 3)
    dot_tile<S, 3, NC>(k, a + i * lda, lda, b, ldb, c + i, ldc, accumulate);
  for (; i < m; ++i) dot_tile<S, 1, NC>(k, a + i * lda, lda, b, ldb, c + i, ldc, accumulate);
}

template <class S>
void dot_product(Index m, Index n, Index k, const S* a, Index lda, const S* b, Index ldb, S* c,
                 Index ldc, bool accumulate) {
  for (Index j = 0; j < n;) {
    const Index cols = n - j >= 4 ? 4 : 1;
    if (cols == 4)
      dot_columns<S, 4>(m, k, a, lda, b + j * ldb, ldb, c + j * ldc, ldc, accumulate);
    else
      dot_columns<S, 1>(m, k, a, lda, b + j * ldb, ldb, c + j * ldc, ldc, accumulate);
    j += cols;
  }
}

}  // namespace direct

#if defined(AETRAIN_GEMM_BLIS)
// BLIS's micro-kernel for S on the CPU we run on, with its register and cache block sizes, all
// from BLIS's context for that CPU (BLIS picks it at run time). We call the kernel in our own
// loops (BLIS's five-loop algorithm: nc columns, kc inner, mc rows, then nr x mr tiles) on our
// own packing buffers and our own OpenMP threads: BLIS's front end starts an OpenMP team on
// every call, which costs microseconds and, on one thread, an allocation in libgomp.
template <class S>
struct MicroKernel {
  using Fn = void (*)(dim_t, dim_t, dim_t, const S*, const S*, const S*, const S*, S*, inc_t, inc_t,
                      const auxinfo_t*, const cntx_t*);
  const cntx_t* cntx;
  Fn fn;
  Index mr, nr, mc, kc, nc;
  bool prefers_rows;  // the kernel wants each row of its C tile contiguous
  std::string arch;   // BLIS's configuration for this CPU
  // Whether BLIS's kernel serves this CPU. Not on first-generation Zen (BLIS's "zen"), whose
  // 128-bit FMA units leave nothing to win: there Eigen's kernel measured 5-9% faster end to
  // end on Fashion-MNIST (AMD EPYC, 2 cores, tests/bench/bench_train.py --also), while on
  // Zen 3 BLIS's measured 1.4-1.6x Eigen's. Nor on a CPU this BLIS does not know ("generic":
  // its reference kernel in plain C, e.g. BLIS 0.9 on Zen 5, whose products measured 53 GFLOP/s
  // against Eigen's AVX-512 kernel's 183). Fixed for the machine, so for a run and its resume.
  bool serves = true;

  static const MicroKernel& get() {
    static const MicroKernel k = [] {
      constexpr num_t dt = std::is_same_v<S, float> ? BLIS_FLOAT : BLIS_DOUBLE;
      // (const in BLIS 1, not in 0.9, whose queries take it as non-const.)
      cntx_t* cntx = const_cast<cntx_t*>(bli_gks_query_cntx());
      MicroKernel k;
      k.cntx = cntx;
#if defined(AETRAIN_BLIS_1)
      k.fn = reinterpret_cast<Fn>(bli_cntx_get_ukr_dt(dt, BLIS_GEMM_UKR, cntx));
      k.prefers_rows = !bli_cntx_ukr_prefers_cols_dt(dt, BLIS_GEMM_UKR, cntx);
#else
      k.fn = reinterpret_cast<Fn>(bli_cntx_get_l3_nat_ukr_dt(dt, BLIS_GEMM_UKR, cntx));
      k.prefers_rows = !bli_cntx_l3_nat_ukr_prefers_cols_dt(dt, BLIS_GEMM_UKR, cntx);
#endif
      k.mr = bli_cntx_get_blksz_def_dt(dt, BLIS_MR, cntx);
      k.nr = bli_cntx_get_blksz_def_dt(dt, BLIS_NR, cntx);
      k.mc = bli_cntx_get_blksz_def_dt(dt, BLIS_MC, cntx) / k.mr * k.mr;
      k.kc = bli_cntx_get_blksz_def_dt(dt, BLIS_KC, cntx);
      k.nc = bli_cntx_get_blksz_def_dt(dt, BLIS_NC, cntx) / k.nr * k.nr;
      k.arch = bli_arch_string(bli_arch_query_id());
      k.serves = k.arch != "zen" && k.arch != "generic";
      // AETRAIN_GEMM_KERNEL=blis or eigen overrides the choice (the tests use BLIS's everywhere).
      const char* forced = std::getenv("AETRAIN_GEMM_KERNEL");
      if (forced && *forced) {
        if (std::string(forced) != "blis" && std::string(forced) != "eigen")
          throw Error(ExitCode::usage, std::string("AETRAIN_GEMM_KERNEL is '") + forced +
                                           "': it must be blis or eigen");
        k.serves = std::string(forced) == "blis";
      }
      return k;
    }();
    return k;
  }

  // Packing room for products whose result is at most `widest` wide in either direction.
  Index room_a() const { return mc * kc; }
  Index room_b(Index widest) const { return kc * std::min(nc, (widest + nr - 1) / nr * nr); }
};

// A strided view: element (i, j) at p[i * rs + j * cs].
template <class S>
struct View {
  const S* p;
  Index rs, cs;
  const S* at(Index i, Index j) const { return p + i * rs + j * cs; }
};

// Packs rows [i0, i0 + m) x columns [j0, j0 + k) of `a` into panels of `w` rows, each stored
// column after column (w values per column), the last panel padded with zeros.
template <class S>
void pack_panels(S* out, View<S> a, Index i0, Index m, Index j0, Index k, Index w) {
  for (Index i = 0; i < m; i += w, out += w * k) {
    const Index rows = std::min(w, m - i);
    for (Index j = 0; j < k; ++j) {
      const S* src = a.at(i0 + i, j0 + j);
      S* dst = out + j * w;
      if (a.rs == 1) {
        std::copy_n(src, rows, dst);
      } else {
        for (Index r = 0; r < rows; ++r) dst[r] = src[r * a.rs];
      }
      std::fill(dst + rows, dst + w, S(0));
    }
  }
}

// C (m, n) = A (m, k) B (k, n), or += when `accumulate`, with A, B and C strided views (C's
// strides rs_c, cs_c), on one thread, with packing buffers pa (room_a) and pb (room_b).
template <class S>
void micro_gemm(const MicroKernel<S>& uk, Index m, Index n, Index k, View<S> a, View<S> b, S* c,
                Index rs_c, Index cs_c, bool accumulate, S* pa, S* pb) {
  const S one = 1, zero = 0;
  auxinfo_t aux{};
  // B^T, so that packing B's columns into panels of nr is packing rows of a view.
  const View<S> bt{b.p, b.cs, b.rs};
  for (Index jc = 0; jc < n; jc += uk.nc) {
    const Index nc = std::min(uk.nc, n - jc);
    for (Index pc = 0; pc < k; pc += uk.kc) {
      const Index kc = std::min(uk.kc, k - pc);
      const S* beta = pc == 0 && !accumulate ? &zero : &one;
      pack_panels(pb, bt, jc, nc, pc, kc, uk.nr);
      for (Index ic = 0; ic < m; ic += uk.mc) {
        const Index mc = std::min(uk.mc, m - ic);
        pack_panels(pa, a, ic, mc, pc, kc, uk.mr);
        for (Index jr = 0; jr < nc; jr += uk.nr) {
          const S* b_panel = pb + jr * kc;
          for (Index ir = 0; ir < mc; ir += uk.mr) {
            const S* a_panel = pa + ir * kc;
            bli_auxinfo_set_next_a(const_cast<S*>(ir + uk.mr < mc ? a_panel + uk.mr * kc : pa),
                                   &aux);
            bli_auxinfo_set_next_b(const_cast<S*>(b_panel), &aux);
            uk.fn(std::min(uk.mr, mc - ir), std::min(uk.nr, nc - jr), kc, &one, a_panel, b_panel,
                  beta, c + (ic + ir) * rs_c + (jc + jr) * cs_c, rs_c, cs_c, &aux, uk.cntx);
          }
        }
      }
    }
  }
}

// c (m,n) = op(a) op(b) (+ c) on column-major storage, one thread. A kernel that prefers rows
// computes the transposed product c^T = op(b)^T op(a)^T, whose rows are c's columns.
template <class S>
void blis_kernel(Index m, Index n, Index k, const S* a, Index lda, Op op_a, const S* b, Index ldb,
                 Op op_b, S* c, Index ldc, bool accumulate, S* pa, S* pb) {
  const MicroKernel<S>& uk = MicroKernel<S>::get();
  const View<S> av = op_a == Op::none ? View<S>{a, 1, lda} : View<S>{a, lda, 1};
  const View<S> bv = op_b == Op::none ? View<S>{b, 1, ldb} : View<S>{b, ldb, 1};
  if (uk.prefers_rows)
    micro_gemm(uk, n, m, k, View<S>{bv.p, bv.cs, bv.rs}, View<S>{av.p, av.cs, av.rs}, c, ldc, 1,
               accumulate, pa, pb);
  else
    micro_gemm(uk, m, n, k, av, bv, c, 1, ldc, accumulate, pa, pb);
}
#endif

}  // namespace

template <class S>
Gemm<S>::Gemm(int threads) : threads_(std::max(1, threads)), pack_a_(threads_), pack_b_(threads_) {}

template <class S>
void Gemm<S>::reserve(Index m, Index n, Index k) {
  // Every slice of a product blocks as the whole product would (block_sizes of m, n, k), so
  // that its inner dimension is cut at the same places whatever the threads.
  const BlockSizes b = block_sizes<S>(m, n, k);
  capacity_a_ = std::max(capacity_a_, b.kc * b.mc);
  capacity_b_ = std::max(capacity_b_, b.kc * b.nc);
#if defined(AETRAIN_GEMM_BLIS)
  const MicroKernel<S>& uk = MicroKernel<S>::get();
  capacity_a_ = std::max(capacity_a_, uk.room_a());
  capacity_b_ = std::max(capacity_b_, uk.room_b(std::max(m, n)));
#endif
  for (int t = 0; t < threads_; ++t) {
    if (pack_a_[t].size() < capacity_a_) pack_a_[t].resize(capacity_a_);
    if (pack_b_[t].size() < capacity_b_) pack_b_[t].resize(capacity_b_);
  }
}

template <class S>
void Gemm<S>::operator()(MatrixMap<S> c, ConstMatrixMap<S> a, Op op_a, ConstMatrixMap<S> b, Op op_b,
                         bool accumulate) {
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
  const Index lda = a.rows(), ldb = b.rows(), ldc = m;
  if (double(m) * double(n) * double(k) < double(kBackendMinWork) && op_b == Op::none) {
    if (op_a == Op::none)
      direct::axpy_product(m, n, k, a.data(), lda, b.data(), 1, ldb, c.data(), ldc, accumulate);
    else
      direct::dot_product(m, n, k, a.data(), lda, b.data(), ldb, c.data(), ldc, accumulate);
    return;
  }
  const Split sp = split_for<S>(m, n, k, threads_);
#if defined(AETRAIN_GEMM_BLIS)
  const bool backend =
      MicroKernel<S>::get().serves && double(m) * double(n) * double(k) >= double(kBackendMinWork);
  if (backend && capacity_b_ < MicroKernel<S>::get().room_b(std::max(m, n)))
    throw std::logic_error("gemm: a product wider than reserve() was told");
#endif

  auto slice = [&](int t) {
    const Index lo = std::min(t * sp.chunk, sp.by_rows ? m : n);
    const Index hi = std::min(lo + sp.chunk, sp.by_rows ? m : n);
    if (lo == hi) return;
    const Index mt = sp.by_rows ? hi - lo : m, nt = sp.by_rows ? n : hi - lo;
    // Where this thread's slice starts in each operand (a transposed operand is a row-major view).
    const S* at = a.data() + (sp.by_rows ? (op_a == Op::none ? lo : lo * lda) : 0);
    const S* bt = b.data() + (sp.by_rows ? 0 : (op_b == Op::none ? lo * ldb : lo));
    S* ct = c.data() + (sp.by_rows ? lo : lo * ldc);
#if defined(AETRAIN_GEMM_BLIS)
    if (backend) {
      blis_kernel(mt, nt, k, at, lda, op_a, bt, ldb, op_b, ct, ldc, accumulate, pack_a_[t].data(),
                  pack_b_[t].data());
      return;
    }
#endif
    if (!accumulate) {
      for (Index j = 0; j < nt; ++j) std::fill_n(ct + j * ldc, mt, S(0));
    }
    BlockSizes bs = block_sizes<S>(m, n, k);
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

std::string gemm_backend() {
  const std::string eigen =
      "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
      "." + std::to_string(EIGEN_MINOR_VERSION) + " packed kernel, compiled for " + compiled_simd();
  const std::string direct = "aetrain's unpacked kernel for products under " +
                             std::to_string(kBackendMinWork) + " multiply-adds with B as stored";
#if defined(AETRAIN_GEMM_BLIS)
  // The configuration BLIS chose for this CPU ("haswell", "zen3", "skx", ...).
  const MicroKernel<float>& uk = MicroKernel<float>::get();
  const std::string blis = std::string("BLIS ") + bli_info_get_version_str();
  if (!uk.serves)
    return eigen + "; " + direct + " (" + blis + " is built in; its '" + uk.arch +
           "' kernels are not used on this CPU, see AETRAIN_GEMM_KERNEL)";
  return blis + " micro-kernel (" + uk.arch + ", " + std::to_string(uk.mr) + "x" +
         std::to_string(uk.nr) + " float) for products of at least " +
         std::to_string(kBackendMinWork) + " multiply-adds; " + direct + "; " + eigen +
         " for the rest";
#else
  return eigen + "; " + direct;
#endif
}

template class Gemm<float>;
template class Gemm<double>;
template void gemm_ref<float>(MatrixMap<float>, ConstMatrixMap<float>, Op, ConstMatrixMap<float>,
                              Op, bool);
template void gemm_ref<double>(MatrixMap<double>, ConstMatrixMap<double>, Op,
                               ConstMatrixMap<double>, Op, bool);

}  // namespace aetrain
