// The training rows, a window at a time (docs/data.md): every epoch cuts the data into windows of
// blocks drawn from (seed, epoch); the ranks read each window's blocks in turn, each on a reader
// thread of its own, and exchange the rows into the position-class layout of sampling.hpp; the
// next window is read and exchanged while the current one trains. Memory per rank stays within a
// budget whatever the number of rows, and the batches are those of any other number of ranks.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "aetrain/comm.hpp"
#include "aetrain/data_layout.hpp"
#include "aetrain/matrix.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/sampling.hpp"
#include "aetrain/sources.hpp"

namespace aetrain {

/// The training rows of one rank. Collective to build, seek and gather; all ranks go through the
/// same steps in the same order.
class TrainingData {
 public:
  /// `sample_block`: the position classes go to the ranks in whole blocks of this many
  /// (sampling.hpp's first_class; --deterministic's blocks).
  TrainingData(const Sources& sources, const DataLayout& layout, const Normalization& norm,
               int64_t global_batch, uint64_t seed, bool shuffle, int64_t epochs, const Comm& comm,
               int64_t sample_block = 1);
  ~TrainingData();
  TrainingData(const TrainingData&) = delete;
  TrainingData& operator=(const TrainingData&) = delete;

  /// The steps of epoch `epoch`: ceil(rows / batch) per window.
  int64_t steps_in_epoch(int64_t epoch);
  /// The windows of epoch `epoch`.
  int64_t windows_in_epoch(int64_t epoch);
  /// Reads the window that holds step t of epoch e and starts on the next. Errors in the reads
  /// are agreed by all ranks. Collective.
  void seek(int64_t epoch, int64_t t);
  /// Copies this rank's rows of step t of epoch e into batch (cols, >= max_rows()), in the order
  /// of their positions in the global batch, and returns how many; unless null, `rows` gets
  /// each one's index in the data (the concatenated files) and `positions` its position class
  /// (in [0, B): a shuffled step may lack some). The steps follow seek one after another.
  /// Exchanges the rows of the next window that are due and moves on to it at its first step.
  /// Collective. Allocates nothing. A read of the next window that fails on this rank does not
  /// throw here (the other ranks are in the exchange): failure() holds it from then on, for the
  /// caller to agree on in the step's own collectives.
  int64_t gather(int64_t epoch, int64_t t, float* batch, int64_t* rows = nullptr,
                 int64_t* positions = nullptr);
  /// The first read that failed in gather, or null.
  std::exception_ptr failure() const;
  /// The most rows this rank gives a step (its position classes).
  int64_t max_rows() const;
  /// True when every row fits in one window: read once, reshuffled every epoch.
  bool in_memory() const;
  /// The smallest and largest value of the rows this rank holds now (+inf, -inf when none).
  std::pair<double, double> range() const;
  /// The bytes this rank holds for the data (data_memory_needed of its layout, as allocated).
  int64_t memory_bytes() const;
  const DataLayout& layout() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace aetrain
