// HDF5 input: dataset checks, the rank's shard of training rows, row ranges for evaluation.
#pragma once

#include <cstdint>
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

/// The rank's shard of the training rows (the classes BatchPlan gives it), read once,
/// as a (cols, shard rows) column-major matrix: one sample per column.
class Shard {
 public:
  /// Reads and checks (every value finite) this rank's rows. Collective over comm.
  Shard(const DataSource& src, const DatasetShape& shape, const BatchPlan& plan, const Comm& comm);

  /// Copies step t's rows under `order` into batch (cols, >= plan.classes()); returns how many.
  /// Allocates nothing.
  int64_t gather(const EpochOrder& order, int64_t t, float* batch);

  int64_t cols() const { return cols_; }
  int64_t rows() const { return int64_t(values_.size()) / cols_; }
  const float* data() const { return values_.data(); }

 private:
  int64_t cols_;
  AlignedVector<float> values_;
  std::vector<int64_t> step_rows_;  // scratch for gather
};

/// Reads rows [range.begin, range.end) of `src` as (cols, rows) column-major, checked finite.
/// Collective over comm (every rank calls it with its own range).
AlignedVector<float> read_row_range(const DataSource& src, const DatasetShape& shape,
                                  RowRange range, const Comm& comm);

}  // namespace aetrain
