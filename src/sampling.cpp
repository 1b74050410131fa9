#include "aetrain/sampling.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "aetrain/rng.hpp"

namespace aetrain {

int64_t first_class(int64_t global_batch, int64_t sample_block, int rank, int ranks) {
  const int64_t blocks = (global_batch + sample_block - 1) / sample_block;
  return std::min(global_batch, sample_block * (blocks * rank / ranks));
}

int64_t deterministic_block_rows(int64_t global_batch) {
  const int64_t blocks = std::max<int64_t>(
      1, std::min(global_batch, std::max<int64_t>(4, (global_batch + 127) / 128)));
  return (global_batch + blocks - 1) / blocks;
}

int64_t deterministic_blocks(int64_t global_batch) {
  const int64_t rows = deterministic_block_rows(global_batch);
  return (global_batch + rows - 1) / rows;
}

int64_t deterministic_batch_for(int ranks, int64_t from) {
  int64_t batch = std::max<int64_t>(from, ranks);  // a block has a row at least
  while (deterministic_blocks(batch) < ranks) ++batch;
  return batch;
}

BatchPlan::BatchPlan(int64_t rows, int64_t global_batch, int rank, int ranks, int64_t sample_block)
    : rows_(rows), batch_(global_batch) {
  if (rows < 1 || global_batch < 1 || ranks < 1 || rank < 0 || rank >= ranks || sample_block < 1)
    throw std::invalid_argument("batch plan: rows, batch, ranks and blocks must be positive");
  steps_ = (rows + global_batch - 1) / global_batch;
  first_ = aetrain::first_class(global_batch, sample_block, rank, ranks);
  classes_ = aetrain::first_class(global_batch, sample_block, rank + 1, ranks) - first_;
  in_last_slot_ = rows - (steps_ - 1) * global_batch;
}

EpochOrder::EpochOrder(const BatchPlan& plan, int64_t max_steps) : plan_(plan) {
  max_steps = std::max(max_steps, plan.steps_per_epoch());
  if (max_steps > int64_t(std::numeric_limits<uint32_t>::max()))
    throw std::invalid_argument("more than 2^32 steps per epoch: raise the batch size");
  perm_.reserve(size_t(plan.classes() * max_steps));
  reset(plan);
}

void EpochOrder::reset(const BatchPlan& plan) {
  plan_ = plan;
  perm_.resize(size_t(plan.classes() * plan.steps_per_epoch()));  // within the room reserved
}

void EpochOrder::set_epoch(uint64_t seed, int64_t epoch, bool shuffle, int64_t window) {
  const int64_t steps = plan_.steps_per_epoch();
  for (int64_t c = 0; c < plan_.classes(); ++c) {
    uint32_t* p = perm_.data() + c * steps;
    std::iota(p, p + steps, uint32_t(0));
    if (!shuffle) continue;
    // Fisher-Yates with our own generator and bounded draw; window w's classes have streams of
    // their own (window 0's are those of an epoch without windows).
    const uint64_t stream = uint64_t(plan_.first_class() + c) + (uint64_t(window) << 32);
    SplitMix64 rng(stream_seed(seed, uint64_t(epoch), stream));
    for (int64_t i = steps - 1; i > 0; --i) std::swap(p[i], p[rng.below(uint64_t(i + 1))]);
  }
}

int64_t EpochOrder::step_rows(int64_t t, int64_t* out) const {
  const int64_t steps = plan_.steps_per_epoch(), classes = plan_.classes();
  int64_t n = 0;
  for (int64_t c = 0; c < classes; ++c) {
    const int64_t slot = perm_[size_t(c * steps + t)];
    if (slot < plan_.class_rows(plan_.first_class() + c)) out[n++] = slot * classes + c;
  }
  return n;
}

std::vector<Block> cut_blocks(const std::vector<int64_t>& file_rows, int64_t block_rows) {
  if (block_rows < 1) throw std::invalid_argument("blocks need at least one row");
  std::vector<Block> blocks;
  int64_t first = 0;
  for (int64_t rows : file_rows) {
    for (int64_t at = 0; at < rows; at += block_rows)
      blocks.push_back({first + at, std::min(block_rows, rows - at)});
    first += rows;
  }
  return blocks;
}

EpochPlan::EpochPlan(std::vector<Block> blocks, int64_t window_rows, int64_t global_batch)
    : blocks_(std::move(blocks)), capacity_(window_rows), batch_(global_batch) {
  if (blocks_.empty() || global_batch < 1)
    throw std::invalid_argument("epoch plan: no rows, or a batch below 1");
  for (const Block& b : blocks_)
    if (b.rows > window_rows)
      throw std::invalid_argument("epoch plan: a block of " + std::to_string(b.rows) +
                                  " rows does not fit a window of " + std::to_string(window_rows));
  const size_t m = blocks_.size();
  order_.reserve(m);
  window_start_.reserve(m + 1);
  window_rows_.reserve(m);
  step_start_.reserve(m + 1);
}

// The stream of the block order: apart from the classes' streams (class + (window << 32)).
constexpr uint64_t kBlockStream = uint64_t(1) << 63;

void EpochPlan::set_epoch(uint64_t seed, int64_t epoch, bool shuffle) {
  epoch_ = epoch;
  const int64_t m = int64_t(blocks_.size());
  order_.resize(size_t(m));
  std::iota(order_.begin(), order_.end(), int64_t(0));
  if (shuffle) {
    SplitMix64 rng(stream_seed(seed, uint64_t(epoch), kBlockStream));
    for (int64_t i = m - 1; i > 0; --i)
      std::swap(order_[size_t(i)], order_[rng.below(uint64_t(i + 1))]);
  }
  window_start_.assign(1, 0);
  window_rows_.clear();
  step_start_.assign(1, 0);
  int64_t rows = 0;
  for (int64_t i = 0; i <= m; ++i) {
    const bool full = i == m || rows + blocks_[size_t(order_[size_t(i)])].rows > capacity_;
    if (full && rows > 0) {  // close the window [window_start_.back(), i)
      std::sort(order_.begin() + window_start_.back(), order_.begin() + i);
      window_start_.push_back(i);
      window_rows_.push_back(rows);
      step_start_.push_back(step_start_.back() + (rows + batch_ - 1) / batch_);
      rows = 0;
    }
    if (i < m) rows += blocks_[size_t(order_[size_t(i)])].rows;
  }
}

std::span<const int64_t> EpochPlan::blocks(int64_t w) const {
  return {order_.data() + window_start_[size_t(w)],
          size_t(window_start_[size_t(w) + 1] - window_start_[size_t(w)])};
}

int64_t EpochPlan::window_of(int64_t t) const {
  return int64_t(std::upper_bound(step_start_.begin(), step_start_.end(), t) -
                 step_start_.begin()) -
         1;
}

RowRange even_split(int64_t rows, int rank, int ranks) {
  return {rows * rank / ranks, rows * (rank + 1) / ranks};
}

}  // namespace aetrain
