#include "aetrain/sampling.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "aetrain/rng.hpp"

namespace aetrain {

BatchPlan::BatchPlan(int64_t rows, int64_t global_batch, int rank, int ranks)
    : rows_(rows), batch_(global_batch) {
  if (rows < 1 || global_batch < 1 || ranks < 1 || rank < 0 || rank >= ranks)
    throw std::invalid_argument("batch plan: rows, batch and ranks must be positive");
  steps_ = (rows + global_batch - 1) / global_batch;
  first_ = global_batch * rank / ranks;
  classes_ = global_batch * (rank + 1) / ranks - first_;
  in_last_slot_ = rows - (steps_ - 1) * global_batch;
}

int64_t BatchPlan::shard_rows() const {
  // All slots but the last are full; the last holds the classes below N - (S-1)B.
  const int64_t in_last = std::clamp(in_last_slot_ - first_, int64_t(0), classes_);
  return (steps_ - 1) * classes_ + in_last;
}

int64_t BatchPlan::file_row(int64_t local) const {
  return first_ + local % classes_ + batch_ * (local / classes_);
}

EpochOrder::EpochOrder(const BatchPlan& plan) : plan_(plan) {
  if (plan.steps_per_epoch() > int64_t(std::numeric_limits<uint32_t>::max()))
    throw std::invalid_argument("more than 2^32 steps per epoch: raise the batch size");
  perm_.resize(size_t(plan.classes() * plan.steps_per_epoch()));
}

void EpochOrder::set_epoch(uint64_t seed, int64_t epoch, bool shuffle) {
  const int64_t steps = plan_.steps_per_epoch();
  for (int64_t c = 0; c < plan_.classes(); ++c) {
    uint32_t* p = perm_.data() + c * steps;
    std::iota(p, p + steps, uint32_t(0));
    if (!shuffle) continue;
    // Fisher-Yates with our own generator and bounded draw.
    SplitMix64 rng(stream_seed(seed, uint64_t(epoch), uint64_t(plan_.first_class() + c)));
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

RowRange even_split(int64_t rows, int rank, int ranks) {
  return {rows * rank / ranks, rows * (rank + 1) / ranks};
}

}  // namespace aetrain
