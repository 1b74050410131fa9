// Which rows each rank holds and which rows form each step: a property of the dataset, the seed
// and the global batch, never of the number of ranks (design/sampling.md).
#pragma once

#include <cstdint>
#include <vector>

namespace aetrain {

/// Row i belongs to position class j = i mod B; class j holds rows j, j + B, j + 2B, ...
/// Rank r of P owns classes [floor(rB/P), floor((r+1)B/P)) and keeps their rows in file order,
/// so slot k of its c-th class is shard row k * classes() + c.
class BatchPlan {
 public:
  BatchPlan(int64_t rows, int64_t global_batch, int rank, int ranks);

  int64_t rows() const { return rows_; }
  int64_t global_batch() const { return batch_; }
  /// S = ceil(N / B); the last step of an epoch may be short.
  int64_t steps_per_epoch() const { return steps_; }
  /// The classes this rank owns: [first_class(), first_class() + classes()).
  int64_t first_class() const { return first_; }
  int64_t classes() const { return classes_; }
  /// Rows in class j < B: S for the classes the last (partial) slot reaches, else S - 1.
  int64_t class_rows(int64_t j) const { return j < in_last_slot_ ? steps_ : steps_ - 1; }
  /// Rows this rank holds.
  int64_t shard_rows() const;
  /// The file row of shard row `local`.
  int64_t file_row(int64_t local) const;

 private:
  int64_t rows_, batch_, steps_, first_, classes_;
  int64_t in_last_slot_;  // N - (S - 1) B: rows of the last slot
};

/// Each owned class's permutation of the epoch's S slots: step t takes from class j the row
/// j + B * perm_j(t) when that row exists. Shuffling off: the identity, so step t is rows
/// [tB, (t+1)B). Memory and work: O(shard rows); allocated once.
class EpochOrder {
 public:
  explicit EpochOrder(const BatchPlan& plan);

  /// Epoch `epoch`'s permutations, drawn from (seed, epoch, class) alone.
  void set_epoch(uint64_t seed, int64_t epoch, bool shuffle);

  /// Writes the shard rows that step t uses (in class order) to `out` (room for classes());
  /// returns how many.
  int64_t step_rows(int64_t t, int64_t* out) const;

  const BatchPlan& plan() const { return plan_; }

 private:
  BatchPlan plan_;
  std::vector<uint32_t> perm_;  // class c's slot for step t at [c * S + t]
};

/// Rows of a dataset: the union of `count` blocks of `block` rows starting at start,
/// start + stride, start + 2 stride, ...
struct RowBlocks {
  int64_t start = 0, stride = 1, count = 0, block = 0;
};

/// Rows [begin, end) of N when N rows are split evenly over `ranks` (validation, encoding).
struct RowRange {
  int64_t begin, end;
};
RowRange even_split(int64_t rows, int rank, int ranks);

}  // namespace aetrain
