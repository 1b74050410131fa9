#include "gradient_sum.hpp"

#include <omp.h>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "aetrain/error.hpp"
#include "aetrain/fault.hpp"
#include "aetrain/sampling.hpp"

namespace aetrain {
namespace {

using Clock = Timers::Clock;

class PlainSum final : public GradientSum {
 public:
  PlainSum(Autoencoder<float>& model, const Comm& comm) : model_(model), comm_(comm) {}

  int64_t* positions() override { return nullptr; }

  void compute(ConstMatrixMap<float> input, ConstMatrixMap<float> target, Timers& timers) override {
    Clock::time_point t = Clock::now();
    loss_ = model_.forward(input, target);
    t = timers.lap(Phase::forward, t);
    model_.backward();
    if (fault("nan-gradient")) model_.grads()[0] = std::nanf("");
    timers.lap(Phase::backward, t);
  }

  void sum_totals(std::span<double> totals) override {
    totals[0] = loss_;
    comm_.allreduce_sum(model_.grads());
    // The totals in double, a small second reduction (measured at under 1 us beside the
    // gradient's): every rank decides alike.
    comm_.allreduce_sum(totals);
  }

  bool sum_gradient(std::span<double>) override { return true; }  // summed with the totals

 private:
  Autoencoder<float>& model_;
  const Comm& comm_;
  double loss_ = 0;
};

// The batch's blocks go to the ranks in whole blocks; each rank's threads train its blocks on
// one-thread workers that read the model's weights, each block's gradient kept apart; every
// term then rounds onto fixed-point grids all ranks agree on, and the integer sums are added.
class ExactSum final : public GradientSum {
 public:
  ExactSum(Autoencoder<float>& model, const Comm& comm, int threads, int64_t global_batch,
           int64_t block_rows, int64_t columns)
      : model_(model), comm_(comm), block_rows_(block_rows) {
    const int64_t blocks = deterministic_blocks(global_batch);  // no fewer than the ranks
    const int64_t n = int64_t(model.params().size()), p = comm.size(), r = comm.rank();
    const int64_t mine = (r + 1) * blocks / p - r * blocks / p;  // the blocks this rank owns
    positions_.resize(size_t(columns));
    block_start_.reserve(size_t(mine) + 1);
    for (int i = 0; i < threads; ++i) workers_.emplace_back(model, block_rows, 1);
    exact_.emplace(n, blocks);
    block_grads_.resize(size_t(mine * n));
    for (int64_t k = 0; k < mine; ++k) block_terms_.push_back(block_grads_.data() + k * n);
    thread_peaks_.assign(size_t(threads), std::vector<uint32_t>(size_t(exact_->chunks())));
    peaks_.resize(size_t(exact_->chunks()));
    if (p > 1) {
      piece_sums_.resize(std::min(kPiece, size_t(n)));
      share_.resize(piece_sums_.size() / size_t(p) + 1);
      share_counts_.resize(size_t(p));
    }
    sums_.resize(kTotals + size_t(blocks));
  }

  int64_t* positions() override { return positions_.data(); }

  void compute(ConstMatrixMap<float> input, ConstMatrixMap<float> target, Timers& timers) override {
    const Clock::time_point t = Clock::now();
    const Index n = input.cols(), cols = input.rows();
    const size_t params = model_.params().size();
    std::fill(sums_.begin(), sums_.end(), 0.0);
    // This rank's blocks: runs of columns whose positions fall in one block (a shuffled step
    // may lack some positions, so a block may have fewer rows than block_rows_: the same on
    // any P).
    block_start_.clear();
    for (Index i = 0; i < n; ++i)
      if (i == 0 || positions_[size_t(i)] / block_rows_ != positions_[size_t(i) - 1] / block_rows_)
        block_start_.push_back(i);
    const int64_t mine = int64_t(block_start_.size());
    if (size_t(mine) > block_terms_.size())  // the columns come in position order
      throw std::logic_error("deterministic step: more blocks than this rank owns");
    block_start_.push_back(n);
    const int threads = int(workers_.size());
    // Thread i trains blocks i, i + T, ... with a worker of its own, one thread per product: a
    // block's gradient is the same bits whichever rank and thread computes it.
    const auto train_blocks = [&](int id) {
      Autoencoder<float>& w = workers_[size_t(id)];
      std::vector<uint32_t>& peaks = thread_peaks_[size_t(id)];
      std::fill(peaks.begin(), peaks.end(), 0u);
      for (int64_t k = id; k < mine; k += threads) {
        const Index first = block_start_[size_t(k)], count = block_start_[size_t(k) + 1] - first;
        sums_[kTotals + size_t(positions_[size_t(first)] / block_rows_)] =
            w.forward(ConstMatrixMap<float>(input.data() + first * cols, cols, count),
                      ConstMatrixMap<float>(target.data() + first * cols, cols, count));
        const std::span<float> grads(block_grads_.data() + size_t(k) * params, params);
        w.backward(grads);
        exact_->raise_peaks(grads, peaks);
      }
    };
    if (threads == 1) {  // no region: libgomp allocates a team even for one thread
      train_blocks(0);
    } else {
#pragma omp parallel num_threads(threads)
      {
        omp_set_num_threads(1);  // this thread's passes open no regions of their own
        train_blocks(omp_get_thread_num());
      }
    }
    peaks_ = thread_peaks_[0];
    for (size_t i = 1; i < thread_peaks_.size(); ++i)
      for (size_t c = 0; c < peaks_.size(); ++c)
        peaks_[c] = std::max(peaks_[c], thread_peaks_[i][c]);
    if (fault("nan-gradient") && mine > 0) {  // a test's NaN in this rank's first block
      block_grads_[0] = std::nanf("");
      exact_->raise_peaks({block_grads_.data(), params}, peaks_);
    }
    timers.lap(Phase::forward, t);  // each block's forward and backward
  }

  void sum_totals(std::span<double> totals) override {
    // The totals and each block's loss sum (one rank's value, zeros elsewhere: exact) in one
    // allreduce.
    std::copy(totals.begin(), totals.end(), sums_.begin());
    comm_.allreduce_sum(std::span<double>(sums_));
    std::copy(sums_.begin(), sums_.begin() + kTotals, totals.begin());
  }

  bool sum_gradient(std::span<double> totals) override {
    // Every rank's peaks set the grids, so every rank first agrees on them (a NaN or infinity
    // among them stops every rank alike).
    comm_.allreduce_max(std::span<uint32_t>(peaks_));
    if (!FixedSum::finite(peaks_)) return false;
    sum_blocks();
    for (size_t b = kTotals; b < sums_.size(); ++b)
      totals[0] += sums_[b];  // in block order, on every rank alike
    return true;
  }

 private:
  // The blocks' gradients of all ranks summed into the model's grads(), exactly, as floats.
  void sum_blocks() {
    const std::span<float> grads = model_.grads();
    const size_t n = grads.size(), ranks = size_t(comm_.size()), rank = size_t(comm_.rank());
    // This step's blocks on this rank (block_start_ ends with the batch's end).
    const std::span<const float* const> terms(block_terms_.data(), block_start_.size() - 1);
    if (ranks == 1) {  // nothing to exchange
      exact_->sum_to_float(terms, peaks_, grads);
      return;
    }
    // In pieces of at most 8 MiB of sums: each rank receives the sums of its share of the
    // piece over all ranks, converts them to float once and gives them to all. Every rank then
    // holds the same floats, whoever converted them.
    for (size_t c0 = 0; c0 < n; c0 += kPiece) {
      const size_t len = std::min(kPiece, n - c0);
      for (size_t q = 0; q < ranks; ++q)
        share_counts_[q] = int(len * (q + 1) / ranks - len * q / ranks);
      const size_t at = len * rank / ranks, mine = size_t(share_counts_[rank]);
      const std::span<int64_t> sums(piece_sums_.data(), len);
      exact_->sum(terms, peaks_, int64_t(c0), sums);
      comm_.reduce_scatter_sum(sums, {share_.data(), mine}, share_counts_);
      exact_->to_float({share_.data(), mine}, peaks_, int64_t(c0 + at),
                       grads.subspan(c0 + at, mine));
      comm_.allgather(grads.subspan(c0, len), share_counts_);
    }
  }

  static constexpr size_t kPiece = size_t(1) << 20;  // elements: 8 MiB of sums

  Autoencoder<float>& model_;
  const Comm& comm_;
  int64_t block_rows_;
  std::deque<Autoencoder<float>> workers_;  // one per thread
  std::optional<FixedSum> exact_;
  AlignedVector<float> block_grads_;                 // (parameters) a block, for this rank's blocks
  std::vector<const float*> block_terms_;            // where each of them starts
  std::vector<std::vector<uint32_t>> thread_peaks_;  // each thread's, then
  std::vector<uint32_t> peaks_;                      // this rank's, then all ranks'
  std::vector<int64_t> positions_;                   // each column's position in the global batch
  std::vector<int64_t> block_start_;         // the step's blocks: first columns, then the end
  std::vector<int64_t> piece_sums_, share_;  // a piece's sums on this rank, and over all ranks
  std::vector<int> share_counts_;            // each rank's share of a piece
  std::vector<double> sums_;                 // the totals, then each block's loss sum
};

}  // namespace

std::unique_ptr<GradientSum> plain_gradient_sum(Autoencoder<float>& model, const Comm& comm) {
  return std::make_unique<PlainSum>(model, comm);
}

std::unique_ptr<GradientSum> exact_gradient_sum(Autoencoder<float>& model, const Comm& comm,
                                                int threads, int64_t global_batch,
                                                int64_t block_rows, int64_t columns) {
  return std::make_unique<ExactSum>(model, comm, threads, global_batch, block_rows, columns);
}

}  // namespace aetrain
