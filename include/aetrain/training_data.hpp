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
#include "aetrain/matrix.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/sampling.hpp"
#include "aetrain/sources.hpp"

namespace aetrain {

/// How the rows are cut and held: the data-layout options. With the seed, the global batch and
/// the data they decide the batches, whatever the number of ranks.
struct DataLayout {
  int64_t block_rows = 0;   // rows per block (a file's last block may be shorter)
  int64_t window_rows = 0;  // the most rows a window holds; >= every block and the batch
};

/// The bytes one rank needs for a layout (both windows' rows and indexes, the reader's buffers),
/// the classes dealt in sample blocks as TrainingData's `sample_block`.
int64_t data_memory_needed(const Sources& sources, const DataLayout& layout, int64_t global_batch,
                           int ranks, const Normalization& norm, int64_t sample_block = 1);

/// Rows of float32 that a window holds by default: all the data when it is no larger, else
/// about this much per window.
constexpr int64_t kDefaultWindowBytes = int64_t(2) << 30;

/// The layout the options ask for, a function of the data and the options alone (never of the
/// memory or the ranks, so the batches are the same on any machine). Block rows: `block_rows`,
/// else a multiple of the first file's chunk rows near 4 MiB, else about 4 MiB of rows. Window
/// rows: `window_rows`, else all rows when they take at most kDefaultWindowBytes as float32,
/// else the data cut into that many equal windows (a multiple of the batch). Throws
/// Error(usage) when a window cannot hold one batch and one block, and when the layout needs
/// more than `budget` bytes per rank (`budget_source` says where the budget came from), naming
/// the least budget that works and the most window rows that fit.
DataLayout choose_layout(const Sources& sources, int64_t block_rows, int64_t window_rows,
                         int64_t budget, const std::string& budget_source, int64_t global_batch,
                         int ranks, const Normalization& norm, int64_t sample_block = 1);

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
