// The data layout and its memory model (docs/data.md): how the training rows are cut into blocks
// and windows, what that costs a rank in bytes, and the layout the options ask for, checked
// against the memory budget.
#pragma once

#include <cstdint>
#include <string>

#include "aetrain/normalization.hpp"
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

/// The longest block: block_rows, or the longest file when every file is shorter.
int64_t longest_block(const Sources& sources, int64_t block_rows);

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

}  // namespace aetrain
