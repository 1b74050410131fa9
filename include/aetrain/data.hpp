// HDF5 data in and out: dataset checks, the rank's shard of training rows, blocks of rows read
// and written by every rank in parallel.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/gemm.hpp"
#include "aetrain/sampling.hpp"

namespace aetrain {

/// A 2-D dataset's size.
struct DatasetShape {
  int64_t rows = 0, cols = 0;
};

/// Checks that `src` is a 2-D float dataset with rows and columns and returns its shape.
/// Collective over comm; throws Error(data) naming the file, the dataset and the problem.
DatasetShape probe_dataset(const DataSource& src, const Comm& comm);

/// A checked 2-D float dataset open on every rank of comm (MPI-IO); each rank then reads its
/// own rows. Collective to open and to close (destroy every reader on every rank together).
class RowReader {
 public:
  RowReader(const DataSource& src, const Comm& comm);
  ~RowReader();
  const DatasetShape& shape() const { return shape_; }
  /// Reads the union of `blocks` into out, one row after another in file order, as float32,
  /// and checks every value is finite. Independent: callers agree on errors before the next
  /// collective. Throws Error(data) naming the file row.
  void read(const std::vector<RowBlocks>& blocks, float* out) const;
  /// Rows [first, first + n).
  void read(int64_t first, int64_t n, float* out) const { read({{first, 1, 1, n}}, out); }

 private:
  struct Impl;
  DataSource src_;
  DatasetShape shape_;
  std::unique_ptr<Impl> impl_;
};

/// A new float32 dataset of `dims` (rows first) that every rank of comm writes its own rows of,
/// through MPI-IO. It appears under its final name only when complete: a new file is written as
/// FILE.tmp and renamed, an existing file gets the dataset as NAME.partial, renamed at the end.
/// An existing dataset is replaced only with `overwrite` (else Error(usage)), and only then.
/// Collective to create, commit and destroy.
class RowWriter {
 public:
  RowWriter(const std::string& file, const std::string& dataset, std::vector<int64_t> dims,
            bool overwrite, const Comm& comm);
  /// Without commit(), removes what it wrote.
  ~RowWriter();
  /// Writes rows [first, first + n), row-major. Independent.
  void write(int64_t first, int64_t n, const float* values);
  /// An attribute on the dataset: every rank passes the same value. Collective.
  void attribute(const std::string& name, const std::string& value);
  void attribute(const std::string& name, int64_t value);
  /// Makes the dataset (and a new file) visible under their final names. Collective.
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The rank's shard of the training rows (the classes BatchPlan gives it), read once,
/// as a (cols, shard rows) column-major matrix: one sample per column.
class Shard {
 public:
  /// Reads and checks (every value finite) this rank's rows. Collective over comm.
  Shard(const DataSource& src, const BatchPlan& plan, const Comm& comm);

  /// Copies step t's rows under `order` into batch (cols, >= plan.classes()); returns how many.
  /// Allocates nothing.
  int64_t gather(const EpochOrder& order, int64_t t, float* batch);

 private:
  int64_t cols_ = 0;
  AlignedVector<float> values_;
  std::vector<int64_t> step_rows_;  // scratch for gather
};

/// This rank's part of the rows split evenly over comm, as (cols, rows) column-major, checked
/// finite. Collective.
AlignedVector<float> read_even_share(const DataSource& src, const Comm& comm);

}  // namespace aetrain
