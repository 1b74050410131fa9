// Which rows each rank holds and which rows form each step: a property of the dataset, the seed
// and the global batch, never of the number of ranks (docs/data.md).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace aetrain {

/// a / b rounded up, for a >= 0 and b > 0.
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// The first position class of rank r of P when the classes are dealt in whole sample blocks of
/// `sample_block` (the last may be shorter): the C = ceil(B / b) blocks split as floor(rC/P).
/// With blocks of 1 (the default split), floor(rB/P).
int64_t first_class(int64_t global_batch, int64_t sample_block, int rank, int ranks);

/// The rows of --deterministic's sample blocks for a global batch B: B cut into
/// C = min(B, max(4, ceil(B / 128))) blocks of ceil(B / C) (the last may be shorter), e.g. 4 of
/// 64 for B = 256, 4 of 128 for 512, 8 of 125 for 1000, 4 of 3 (and a last of 1) for 10.
int64_t deterministic_block_rows(int64_t global_batch);
/// The sample blocks of a global batch B under --deterministic: ceil(B / block rows), at most
/// one per rank. Not monotonic in B for small batches (9 rows: 3 blocks of 3; 8 rows: 4 of 2).
int64_t deterministic_blocks(int64_t global_batch);
/// The least global batch of at least `from` rows that deterministic_blocks cuts into at least
/// `ranks` blocks.
int64_t deterministic_batch_for(int ranks, int64_t from);

/// Row i belongs to position class j = i mod B; class j holds rows j, j + B, j + 2B, ...
/// Rank r of P owns classes [first_class(r), first_class(r + 1)) and keeps their rows in file
/// order, so slot k of its c-th class is shard row k * classes() + c.
class BatchPlan {
 public:
  BatchPlan(int64_t rows, int64_t global_batch, int rank, int ranks, int64_t sample_block = 1);

  int64_t rows() const { return rows_; }
  int64_t global_batch() const { return batch_; }
  /// S = ceil(N / B); the last step of an epoch may be short.
  int64_t steps_per_epoch() const { return steps_; }
  /// The classes this rank owns: [first_class(), first_class() + classes()).
  int64_t first_class() const { return first_; }
  int64_t classes() const { return classes_; }
  /// Rows in class j < B: S for the classes the last (partial) slot reaches, else S - 1.
  int64_t class_rows(int64_t j) const { return j < in_last_slot_ ? steps_ : steps_ - 1; }

 private:
  int64_t rows_, batch_, steps_, first_, classes_;
  int64_t in_last_slot_;  // N - (S - 1) B: rows of the last slot
};

/// Each owned class's permutation of the epoch's S slots: step t takes from class j the row
/// j + B * perm_j(t) when that row exists. Shuffling off: the identity, so step t is rows
/// [tB, (t+1)B). Memory and work: O(shard rows); allocated once.
class EpochOrder {
 public:
  /// Room for plans of up to `max_steps` steps per epoch (plan's own by default).
  explicit EpochOrder(const BatchPlan& plan, int64_t max_steps = 0);

  /// Takes another plan with the same classes (another window's) and no more steps than the
  /// room made. Allocates nothing.
  void reset(const BatchPlan& plan);
  /// Epoch `epoch`'s permutations for window `window`, drawn from (seed, epoch, window, class)
  /// alone; window 0's are those of an epoch of one window.
  void set_epoch(uint64_t seed, int64_t epoch, bool shuffle, int64_t window = 0);

  /// Writes the shard rows that step t uses (in class order) to `out` (room for classes());
  /// returns how many.
  int64_t step_rows(int64_t t, int64_t* out) const;

 private:
  BatchPlan plan_;
  std::vector<uint32_t> perm_;  // class c's slot for step t at [c * S + t]
};

/// A block of the data: rows [first, first + rows) of the concatenated files, inside one file.
/// Blocks are what is read: each by one rank, once per pass over the data.
struct Block {
  int64_t first = 0, rows = 0;
};

/// Each file's rows (`file_rows`, in order) cut into blocks of `block_rows`; a file's last block
/// may be shorter.
std::vector<Block> cut_blocks(const std::vector<int64_t>& file_rows, int64_t block_rows);

/// One epoch's windows (docs/data.md): the blocks in an order drawn from (seed, epoch) (their
/// own order when not shuffling), taken in turn into windows of at most `window_rows` rows (a
/// block is never split; a window has at least one). A window's rows are its blocks' rows in
/// dataset order; it has ceil(rows / B) steps, the last maybe short. All data that fits in one
/// window makes one window, in dataset order: the plan of an epoch without windows. Memory is
/// allocated once; set_epoch reuses it.
class EpochPlan {
 public:
  EpochPlan(std::vector<Block> blocks, int64_t window_rows, int64_t global_batch);

  /// Epoch `epoch`'s windows. Allocates nothing.
  void set_epoch(uint64_t seed, int64_t epoch, bool shuffle);

  int64_t epoch() const { return epoch_; }
  const std::vector<Block>& all_blocks() const { return blocks_; }
  int64_t windows() const { return int64_t(window_start_.size()) - 1; }
  /// Window w's blocks (indices into all_blocks()), in dataset order.
  std::span<const int64_t> blocks(int64_t w) const;
  int64_t rows(int64_t w) const { return window_rows_[size_t(w)]; }
  int64_t steps(int64_t w) const { return step_start_[size_t(w) + 1] - step_start_[size_t(w)]; }
  /// The epoch's first step of window w; steps() in all.
  int64_t first_step(int64_t w) const { return step_start_[size_t(w)]; }
  int64_t steps() const { return step_start_.back(); }
  /// The window that step t of the epoch belongs to.
  int64_t window_of(int64_t t) const;

 private:
  std::vector<Block> blocks_;
  int64_t capacity_, batch_, epoch_ = -1;
  std::vector<int64_t> order_;         // block indices, window after window
  std::vector<int64_t> window_start_;  // window w is order_[window_start_[w], window_start_[w+1])
  std::vector<int64_t> window_rows_;
  std::vector<int64_t> step_start_;
};

/// Rows [begin, end) of N when N rows are split evenly over `ranks` (validation, encoding).
struct RowRange {
  int64_t begin, end;
};
RowRange even_split(int64_t rows, int rank, int ranks);

}  // namespace aetrain
