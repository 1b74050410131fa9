// A step's gradient summed over the ranks, two ways: the plain sum (one forward and backward
// pass over this rank's columns, one allreduce: fast, its bits depend on the number of ranks)
// and the exact sum of --deterministic (the batch cut into sample blocks, each block's gradient
// computed alone and the blocks' gradients summed exactly: the same bits on any number of
// ranks and threads; docs/deterministic.md).
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "aetrain/comm.hpp"
#include "aetrain/fixed_sum.hpp"
#include "aetrain/log.hpp"
#include "aetrain/model.hpp"

namespace aetrain {

/// The step's totals summed over the ranks beside the gradient: the loss sum, the rows, the
/// ranks that caught a stop signal and the ranks that failed.
constexpr size_t kTotals = 4;

class GradientSum {
 public:
  virtual ~GradientSum() = default;

  /// Where the step's gather writes each column's position in the global batch (the exact sum
  /// finds its blocks by them), or nullptr when not needed.
  virtual int64_t* positions() = 0;
  /// This rank's passes over its columns of the step (`input` corrupted or not, `target` the
  /// clean rows), timed as forward and backward.
  virtual void compute(ConstMatrixMap<float> input, ConstMatrixMap<float> target,
                       Timers& timers) = 0;
  /// Sums `totals` over all ranks (kTotals: this rank's in, with its loss sum left at 0, which
  /// this adds; all ranks' sums out). Every rank can then raise a failure alike, before
  /// sum_gradient reads anything. The plain sum sums the gradient here too, first (a rank that
  /// failed takes part with the gradient of its zero rows).
  virtual void sum_totals(std::span<double> totals) = 0;
  /// The gradient summed over all ranks into the model's grads(), and the loss sum into
  /// totals[0] where sum_totals left it out. False when a gradient is NaN or infinite and the
  /// sum was not made (the exact sum; the plain sum leaves that to Adam).
  virtual bool sum_gradient(std::span<double> totals) = 0;
};

/// The plain sum for `model` (whose grads() receive it) over `comm`.
std::unique_ptr<GradientSum> plain_gradient_sum(Autoencoder<float>& model, const Comm& comm);

/// The exact sum for `model`, with a one-thread worker per thread (`threads`) reading its
/// weights, for global batches of `global_batch` cut into sample blocks of `block_rows`; this
/// rank's columns of a step are at most `columns`. The ranks must not outnumber the blocks.
std::unique_ptr<GradientSum> exact_gradient_sum(Autoencoder<float>& model, const Comm& comm,
                                                int threads, int64_t global_batch,
                                                int64_t block_rows, int64_t columns);

}  // namespace aetrain
