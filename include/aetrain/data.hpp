// HDF5 data in and out: dataset checks, the rank's shard of training rows, blocks of rows read
// and written by every rank in parallel.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/matrix.hpp"
#include "aetrain/moments.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/sampling.hpp"

namespace aetrain {

/// The HDF5 library, e.g. "1.10.8 (parallel)".
std::string hdf5_library_version();

/// How values are written: float32, or float64 (for outputs of float64 data, whose precision a
/// float32 copy would lose, e.g. a large offset with a small spread).
enum class Precision { float32, float64 };

/// A 2-D dataset's size, and the precision that holds its values.
struct DatasetShape {
  int64_t rows = 0, cols = 0;
  Precision precision = Precision::float32;  // float64 for 64-bit floats
};

/// Which element types a reader takes: floating point only, or integers too (for data that a
/// normalization will scale).
enum class Accept { floats, numbers };

/// Checks that `src` is a 2-D dataset of numbers `accept` takes, with rows and columns, and
/// returns its shape. Collective over comm; throws Error(data) naming the file, the dataset and
/// the problem.
DatasetShape probe_dataset(const DataSource& src, const Comm& comm, Accept accept = Accept::floats);

/// A checked 2-D dataset open on every rank of comm (MPI-IO); each rank then reads its own rows.
/// Collective to open and to close (destroy every reader on every rank together).
class RowReader {
 public:
  RowReader(const DataSource& src, const Comm& comm, Accept accept = Accept::floats);
  ~RowReader();
  const DatasetShape& shape() const { return shape_; }
  /// Reads the union of `blocks` into out, one row after another in file order, as stored
  /// (converted to double), and checks every value is finite. Independent: callers agree on
  /// errors before the next collective. Throws Error(data) naming the file row.
  void read(const std::vector<RowBlocks>& blocks, double* out) const;
  /// The same rows normalized by `norm` (in double, in pieces of bounded size) and rounded to
  /// float32.
  void read(const std::vector<RowBlocks>& blocks, float* out, const Normalization& norm) const;
  /// Rows [first, first + n), as stored or normalized.
  void read(int64_t first, int64_t n, double* out) const { read({{first, 1, 1, n}}, out); }
  void read(int64_t first, int64_t n, float* out, const Normalization& norm) const {
    read({{first, 1, 1, n}}, out, norm);
  }

 private:
  // The values as stored, converted to S, checked finite.
  template <class S>
  void read_stored(const std::vector<RowBlocks>& blocks, S* out) const;
  template <class S>
  void check_finite(const std::vector<RowBlocks>& blocks, const S* values, const char* how) const;
  struct Impl;
  DataSource src_;
  DatasetShape shape_;
  std::unique_ptr<Impl> impl_;
};

/// A new float32 (or float64) dataset of `dims` (rows first) that every rank of comm writes its
/// own rows of,
/// through MPI-IO. It appears under its final name only when complete: a new file is written as
/// FILE.tmp and renamed, an existing file gets the dataset as NAME.partial, renamed at the end.
/// An existing dataset is replaced only with `overwrite` (else Error(usage)), and only then.
/// Collective to create, commit and destroy.
class RowWriter {
 public:
  RowWriter(const std::string& file, const std::string& dataset, std::vector<int64_t> dims,
            bool overwrite, const Comm& comm, Precision precision = Precision::float32);
  /// Without commit(), removes what it wrote.
  ~RowWriter();
  /// Writes rows [first, first + n), row-major. Independent.
  void write(int64_t first, int64_t n, const float* values);
  void write(int64_t first, int64_t n, const double* values);
  /// An attribute on the dataset: every rank passes the same value. Collective.
  void attribute(const std::string& name, const std::string& value);
  void attribute(const std::string& name, int64_t value);
  /// Makes the dataset (and a new file) visible under their final names. Collective.
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The rank's shard of the training rows (the classes BatchPlan gives it), read once and
/// normalized, as a (cols, shard rows) column-major matrix: one sample per column.
class Shard {
 public:
  /// Reads, checks (every value finite) and normalizes this rank's rows. Collective over comm.
  Shard(const DataSource& src, const BatchPlan& plan, const Normalization& norm, const Comm& comm);

  /// Copies step t's rows under `order` into batch (cols, >= plan.classes()); returns how many.
  /// Allocates nothing.
  int64_t gather(const EpochOrder& order, int64_t t, float* batch);
  /// The smallest and largest value the rank holds (+inf, -inf when it holds none).
  std::pair<double, double> range() const;

 private:
  int64_t cols_ = 0;
  AlignedVector<float> values_;
  std::vector<int64_t> step_rows_;  // scratch for gather
};

/// This rank's part of the rows split evenly over comm, normalized, as (cols, rows)
/// column-major, checked finite. Collective.
AlignedVector<float> read_even_share(const DataSource& src, const Normalization& norm,
                                     const Comm& comm);

/// The column moments of every row of `src` (kind: Scatter::full for a PCA), each rank reading
/// its even share in blocks of `block_rows` rows, in double. The same on every rank. Collective.
Moments dataset_moments(const DataSource& src, Scatter kind, Accept accept, int64_t block_rows,
                        const Comm& comm);

/// The rows a block of about 4 MiB of doubles holds, for reading `cols` columns.
int64_t rows_per_block(int64_t cols);

/// The element types a reader must take for data that a normalization of `kind` scales.
inline Accept accepted_by(NormalizeKind kind) {
  return kind == NormalizeKind::none ? Accept::floats : Accept::numbers;
}

}  // namespace aetrain
