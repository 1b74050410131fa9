// The training data's reader thread (docs/data.md): each rank reads its blocks of a window on a
// thread of its own while the previous window trains, each block's rows arranged by the rank
// they go to, ready for the exchange. Private to the library.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "aetrain/normalization.hpp"
#include "aetrain/sampling.hpp"
#include "aetrain/sources.hpp"

namespace aetrain {

/// Rows i of [a, a + n) whose position class i mod B lies in [lo, hi).
inline int64_t rows_in_classes(int64_t a, int64_t n, int64_t B, int64_t lo, int64_t hi) {
  const auto below = [&](int64_t x) {
    return (x / B) * (hi - lo) + std::clamp(x % B - lo, int64_t(0), hi - lo);
  };
  return below(a + n) - below(a);
}

// Reads this rank's blocks on a thread of its own, in the order they were submitted, into a ring
// of kSlots buffers; each block's rows arranged by the rank they go to (in window row order
// within each), ready to send.
class BlockReader {
 public:
  static constexpr int64_t kSlots = 2;  // blocks it may hold read ahead

  BlockReader(const Sources& sources, const Normalization& norm, int64_t max_block_rows,
              int64_t max_jobs, int64_t global_batch, std::vector<int64_t> class_start);
  ~BlockReader();

  /// Queues block b, whose first row is row `offset` of its window; returns its job number.
  int64_t submit(const Block& b, int64_t offset);
  int64_t next_job() const { return submitted_; }

  /// Job j's rows, arranged by destination, once read; rethrows its read's error.
  const float* wait(int64_t j);

  /// Job j's slot, read or not: what a rank whose read failed still sends, so that the exchange
  /// it takes part in completes on every rank.
  const float* slot(int64_t j) const { return slots_[size_t(j % kSlots)].data(); }

  /// Job j's slot may take the next block.
  void release(int64_t j);

 private:
  struct Job {
    Block block;
    int64_t offset = 0;
  };

  void run();

  // Reads the block and copies its rows into `out` grouped by destination rank.
  void arrange(const Job& job, float* out);

  SourceReader reader_;
  const Normalization norm_;
  const int64_t cols_, batch_;
  const std::vector<int64_t> class_start_;  // rank d owns classes [start[d], start[d + 1])
  std::vector<float> block_;                // one block as read
  std::vector<float> slots_[kSlots];
  std::vector<Job> jobs_;  // a ring
  std::vector<int64_t> next_row_;
  int64_t submitted_ = 0, done_ = 0, consumed_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  int64_t failed_job_ = -1;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace aetrain
