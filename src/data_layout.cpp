#include "aetrain/data_layout.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "aetrain/error.hpp"
#include "aetrain/sampling.hpp"
#include "block_reader.hpp"

namespace aetrain {
namespace {

constexpr int64_t kTargetBlockBytes = 4 << 20;  // default block: about 4 MiB as stored
// What the libraries add while the rows stream: HDF5's decompression buffers and free lists,
// MPI's exchange fragments, the reader thread's stack and allocator arena. Measured 1.6 to 2.3
// MiB (Open MPI 4.1, HDF5 1.10, contiguous and gzip-chunked data); counted in the budget.
constexpr int64_t kLibraryBytes = 3 << 20;

int64_t block_count(const Sources& s, int64_t block_rows) {
  int64_t n = 0;
  for (const SourceEntry& e : s.files) n += ceil_div(e.rows, block_rows);
  return n;
}

// What a rank holds whatever the window: the reader's buffers (one block as read, kSlots
// arranged for sending, the normalization's scratch), its jobs, the epoch plans, and the
// libraries' share.
int64_t fixed_bytes(const Sources& s, int64_t block_rows, int ranks, const Normalization& norm) {
  const int64_t block = longest_block(s, block_rows) * s.cols * int64_t(sizeof(float));
  const int64_t blocks = block_count(s, block_rows);
  const int64_t plans = 3 * blocks * int64_t(sizeof(Block) + 4 * sizeof(int64_t));
  const int64_t jobs = (ceil_div(blocks, ranks) + 1) * int64_t(sizeof(Block) + sizeof(int64_t));
  return (BlockReader::kSlots + 1) * block + SourceReader::scratch_bytes(s, norm) + plans + jobs +
         kLibraryBytes;
}

// A window's rows and index for one rank, per step of the window (ceil(W / B) of them): those
// of the most classes a rank owns (ceil(B / P) when dealt one by one).
int64_t bytes_per_window_step(const Sources& s, int64_t global_batch, int ranks,
                              int64_t sample_block) {
  const int64_t classes =
      std::min(global_batch, sample_block * ceil_div(ceil_div(global_batch, sample_block), ranks));
  return classes * (s.cols * int64_t(sizeof(float)) + int64_t(sizeof(int32_t) + sizeof(int64_t)));
}

std::string mib(int64_t bytes) {
  char text[32];
  if (bytes >= int64_t(1) << 30)
    std::snprintf(text, sizeof text, "%.1f GiB", double(bytes) / double(1 << 30));
  else
    std::snprintf(text, sizeof text, "%.1f MiB", double(bytes) / double(1 << 20));
  return text;
}

}  // namespace

int64_t longest_block(const Sources& s, int64_t block_rows) {
  int64_t most = 1;
  for (const SourceEntry& e : s.files) most = std::max(most, std::min(e.rows, block_rows));
  return most;
}

int64_t data_memory_needed(const Sources& sources, const DataLayout& layout, int64_t global_batch,
                           int ranks, const Normalization& norm, int64_t sample_block) {
  const int64_t window = std::min(layout.window_rows, sources.rows);
  const int64_t windows = layout.window_rows >= sources.rows ? 1 : 2;  // the next one too
  return windows * ceil_div(window, global_batch) *
             bytes_per_window_step(sources, global_batch, ranks, sample_block) +
         fixed_bytes(sources, layout.block_rows, ranks, norm);
}

DataLayout choose_layout(const Sources& sources, int64_t block_rows, int64_t window_rows,
                         int64_t budget, const std::string& budget_source, int64_t global_batch,
                         int ranks, const Normalization& norm, int64_t sample_block) {
  DataLayout layout;
  const int64_t row_bytes = std::max<int64_t>(1, sources.stored_row_bytes);
  if (block_rows > 0)
    layout.block_rows = block_rows;
  else if (sources.chunk_rows > 0)  // whole chunks, so that each is read once
    layout.block_rows = sources.chunk_rows *
                        std::max<int64_t>(1, std::llround(double(kTargetBlockBytes) /
                                                          double(sources.chunk_rows * row_bytes)));
  else
    layout.block_rows = std::max<int64_t>(1, kTargetBlockBytes / row_bytes);
  const int64_t block = longest_block(sources, layout.block_rows);
  const int64_t least = std::max(global_batch, block);
  if (window_rows > 0) {
    if (window_rows < least)
      throw Error(ExitCode::usage, "--window-rows " + std::to_string(window_rows) +
                                       " is too small: a window " + "must hold a global batch (" +
                                       std::to_string(global_batch) + " rows) and a block (" +
                                       std::to_string(block) + " rows): at least " +
                                       std::to_string(least));
    layout.window_rows = window_rows;
  } else {
    const int64_t float_row = sources.cols * int64_t(sizeof(float));
    const int64_t windows = ceil_div(sources.rows * float_row, kDefaultWindowBytes);
    layout.window_rows = windows <= 1
                             ? sources.rows
                             : std::max(ceil_div(least, global_batch),
                                        ceil_div(ceil_div(sources.rows, windows), global_batch)) *
                                   global_batch;
  }
  const auto needed = [&](int64_t w) {
    return data_memory_needed(sources, {layout.block_rows, w}, global_batch, ranks, norm,
                              sample_block);
  };
  const int64_t need = needed(layout.window_rows);
  if (need <= budget) return layout;
  // The most rows two windows (the one training and the next) may hold within the budget.
  const int64_t per_step = 2 * bytes_per_window_step(sources, global_batch, ranks, sample_block);
  const int64_t fixed = fixed_bytes(sources, layout.block_rows, ranks, norm);
  const int64_t fit = budget > fixed ? (budget - fixed) / per_step * global_batch : 0;
  const std::string on = " per rank on " + std::to_string(ranks) + " rank(s)";
  // The fewest ranks (up to 4096) whose shares of the same windows fit the budget.
  int more = 0;
  for (int p = ranks + 1; p <= 4096 && more == 0; ++p)
    if (data_memory_needed(sources, layout, global_batch, p, norm, sample_block) <= budget)
      more = p;
  const std::string what =
      window_rows > 0 ? "--window-rows " + std::to_string(window_rows)
      : layout.window_rows >= sources.rows
          ? "every row of " + sources.name + " in one window (the default for data of at most " +
                mib(kDefaultWindowBytes) + " as float32)"
          : "windows of " + std::to_string(layout.window_rows) + " rows of " + sources.name +
                " (the default: the data in windows of at most about " + mib(kDefaultWindowBytes) +
                ")";
  throw Error(ExitCode::usage,
              what + " needs " + mib(need) + on + ", more than the " + mib(budget) + " of " +
                  budget_source + "; give --data-memory " +
                  std::to_string(ceil_div(need, int64_t(1) << 20)) + "MiB (where the node has it)" +
                  (more > 0 ? ", or run " + std::to_string(more) +
                                  " ranks or more (the batches stay the same)"
                            : "") +
                  (fit >= least ? ", or choose smaller windows with --window-rows " +
                                      std::to_string(std::min(fit, sources.rows)) +
                                      " (the most that fit; other windows give other batches)"
                                : ""));
}

}  // namespace aetrain
