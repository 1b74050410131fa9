// Data that spans files: the files a --data value names (paths, quoted globs, @lists), the table
// of what their datasets hold, and reading rows of their concatenation: a range of rows or a
// rank's share in blocks. The files' format is below this module (src/input_format.hpp): its
// callers never learn it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/matrix.hpp"
#include "aetrain/moments.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/sampling.hpp"
#include "aetrain/transform.hpp"

namespace aetrain {

/// How values are written: float32, or float64 (for outputs of float64 data, whose precision a
/// float32 copy would lose, e.g. a large offset with a small spread).
enum class Precision { float32, float64 };

/// Which element types a reader takes: floating point only, or integers too (for data that a
/// normalization will scale).
enum class Accept { floats, numbers };

/// The element types a reader must take for data that a normalization of `kind` (and a count
/// transform `t`) scales.
inline Accept accepted_by(NormalizeKind kind, const CountTransform& t = {}) {
  return kind == NormalizeKind::none && t == CountTransform{} ? Accept::floats : Accept::numbers;
}

/// Rows held as compressed sparse rows: row r's values are values[ptr[r] .. ptr[r + 1]), in the
/// columns cols[...] (ptr[0] = 0).
struct CompressedRows {
  std::vector<int64_t> ptr, cols;
  std::vector<double> values;
};

/// One file's part of the data: its dataset's rows are rows [first_row, first_row + rows) of
/// the concatenation.
struct SourceEntry {
  std::string file, dataset;
  int64_t first_row = 0, rows = 0;
  bool operator==(const SourceEntry&) const = default;
};

/// The files behind a DataSource, in order, and what their datasets hold. The same on every
/// rank (rank 0 looks, the others are told: a new field goes into sources_fields in
/// src/sources.cpp).
struct Sources {
  std::vector<SourceEntry> files;
  int64_t rows = 0, cols = 0;                // cols: as the transform leaves them
  RowTransform transform;                    // what each row goes through as it is read
  Precision precision = Precision::float32;  // float64 when some file holds 64-bit floats
  int64_t chunk_rows = 0;        // the first file's chunk rows; 0 when it is not chunked
  bool compressed = false;       // every file stores compressed sparse rows
  int64_t stored_row_bytes = 0;  // one row as the first file stores it
  std::string name;              // for messages: "a.h5:/train", "a.h5 and 7 more files:/train"
  // Every file that reading this data opens, as named: the @lists, the data files, and the
  // files their datasets reach into (external links, virtual sources, external raw files, as
  // HDF5 finds them). No output may be written over one of them.
  std::vector<std::string> inputs;
};

/// The paths a --data value names, in order: each value a path, a glob (matches sorted by
/// name; none is an error) or @FILE (one path a line; blank lines and # comments skipped).
/// Throws Error(data) naming what matched nothing or could not be read. One process. Unless
/// null, `lists` gets the @FILEs read.
std::vector<std::string> expand_paths(const std::vector<std::string>& specs,
                                      std::vector<std::string>* lists = nullptr);

/// Expands `src` and checks every file: an HDF5 file with a 2-D dataset of numbers `accept`
/// takes (or a sparse matrix: AnnData's, 10x's), the columns of the first file (and their
/// names, where the files name them), and every file the dataset reaches into as HDF5 would
/// find it (external links on its path, each virtual source, external raw files), present and
/// covering what the dataset reads. Then fits `transform` to the columns: a transform asked
/// for (stored_cols 0) gets the columns its features name; one that a model stores keeps its
/// columns, found again by name where the data names its columns. Rank 0 looks and
/// broadcasts the table; an error names the first file that is missing or differs
/// (Error(data), the same on every rank). Collective.
Sources probe_sources(const DataSource& src, const Comm& comm, Accept accept = Accept::floats,
                      const RowTransform& transform = {});

/// The names of the rows (AnnData's obs index, 10x's barcodes), file after file; a file that
/// names none gives its row numbers in the concatenation ("0", "1", ...). One process.
std::vector<std::string> row_names(const Sources& sources);

/// The group that describes the rows of a single AnnData file (/obs), for an output to copy;
/// "" for several files or none. One process.
std::string row_table(const Sources& sources);

/// `count` files named by the first, for messages: "a.h5", or "a.h5 and 7 more files" (`first`
/// may carry the dataset: "a.h5:/train and 7 more files").
std::string name_of_files(const std::string& first, size_t count);

/// Reads rows of the concatenated data, each process what it needs when it needs it, with no
/// collective open (HDF5 files through HDF5's default, serial driver), so any rank (or a thread
/// of it) may read any rows at any time. Keeps one file open at a time.
class SourceReader {
 public:
  explicit SourceReader(const Sources& sources);
  ~SourceReader();
  SourceReader(SourceReader&&) noexcept;
  SourceReader& operator=(SourceReader&&) noexcept;

  const Sources& sources() const { return sources_; }
  /// Rows [first, first + n) as stored, converted to double, checked finite. Throws Error(data)
  /// naming the file, its dataset and the row and column in it.
  void read(int64_t first, int64_t n, double* out);
  /// The same rows normalized by `norm` (in double, in pieces of about 4 MiB) and rounded to
  /// float32, into the caller's buffer (cols x n): what a model takes, e.g. a batch of
  /// validation rows. Also checked finite after the normalization.
  void read(int64_t first, int64_t n, float* out, const Normalization& norm);
  /// Rows [first, first + n) as compressed sparse rows, transformed, each value checked finite;
  /// false (nothing read) unless every file stores its rows compressed (Sources::compressed).
  bool read(int64_t first, int64_t n, CompressedRows& out);
  /// Bytes of scratch the float reads may hold (the pieces' doubles).
  static int64_t scratch_bytes(const Sources& sources, const Normalization& norm);
  /// Rows read so far whose total was 0 under a size factor (left as zeros).
  int64_t zero_total_rows() const { return zero_total_; }

 private:
  template <class S>
  void read_stored(int64_t first, int64_t n, S* out);
  // The file that holds row `row` of the concatenation.
  size_t file_of(int64_t row) const;
  // Calls fn(entry, its open file, first local row, count) for each file's part of rows
  // [first, first + n), in order, keeping one file open.
  template <class F>
  void for_each_file(int64_t first, int64_t n, F&& fn);
  // Rows as stored, converted to S, checked finite.
  template <class S>
  void read_file_rows(int64_t first, int64_t n, S* out);
  struct Impl;
  Sources sources_;
  std::unique_ptr<Impl> impl_;
  int64_t zero_total_ = 0;
};

/// The rows a block of about 4 MiB of doubles holds, for reading `cols` columns.
int64_t rows_per_block(int64_t cols);

/// A block of rows as stored: first row, row count, the values (cols, n) in double.
using StoredBlockFn = std::function<void(int64_t first, int64_t n, ConstMatrixMap<double> stored)>;
/// The same and the values as a model takes them: normalized, rounded to float32 (cols, n).
using NormalizedBlockFn = std::function<void(
    int64_t first, int64_t n, ConstMatrixMap<double> stored, ConstMatrixMap<float> normalized)>;

/// The one pass over rows in blocks: reads rows [rows.begin, rows.end) of `sources` (this
/// rank's share: even_split) in order, `block_rows` at a time (the last block may be shorter),
/// and calls fn on each block; the buffers are its own, reused from block to block. Throws
/// Error(data) as SourceReader does, on this rank alone: callers agree on errors (Comm::agree).
void for_each_block(const Sources& sources, RowRange rows, int64_t block_rows,
                    const StoredBlockFn& fn);
/// The same, each block also normalized by `norm` (the identity for a model without one).
void for_each_block(const Sources& sources, RowRange rows, int64_t block_rows,
                    const Normalization& norm, const NormalizedBlockFn& fn);

/// The column moments of every row of `sources` (kind: Scatter::full for a PCA), each rank
/// reading its even share in blocks of `block_rows` rows, in double. The same on every rank.
/// Unless null, `zero_total` gets the rows whose total was 0 under a size factor. Collective;
/// read errors are agreed.
Moments dataset_moments(const Sources& sources, Scatter kind, int64_t block_rows, const Comm& comm,
                        int64_t* zero_total = nullptr);

}  // namespace aetrain
