#include "aetrain/data.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "aetrain/h5.hpp"

namespace aetrain {
namespace {

std::string where(const DataSource& src) { return src.file + ": " + src.dataset + ": "; }

[[noreturn]] void bad_data(const DataSource& src, const std::string& what) {
  throw Error(ExitCode::data, where(src) + what);
}

// Opens the file through MPI-IO on comm and the dataset, with messages a user can act on.
struct Opened {
  h5::Handle file, dataset;
};

Opened open(const DataSource& src, const Comm& comm) {
  // Checked by each rank, agreed before the collective open: a rank that cannot see the file
  // must not leave the others waiting in it.
  comm.agree([&] {
    if (!std::filesystem::exists(src.file))
      throw Error(ExitCode::data, src.file + ": no such file");
    if (!h5::is_hdf5(src.file))
      throw Error(ExitCode::data, src.file + ": not an HDF5 file (or truncated)");
  });
  Opened o;
  try {
    o.file = h5::open_file(src.file, &comm);
  } catch (const h5::Failure& e) {
    throw Error(ExitCode::data, src.file + ": " + e.what(), /*collective=*/true);
  }
  comm.agree([&] {
    if (!h5::exists(o.file, src.dataset)) bad_data(src, "no such dataset");
    if (!h5::is_dataset(o.file, src.dataset)) bad_data(src, "is a group, not a dataset");
    try {
      o.dataset = h5::open_dataset(o.file, src.dataset);
    } catch (const h5::Failure& e) {
      bad_data(src, e.what());
    }
  });
  return o;
}

// Throws, naming the file row, if any value of `rows` (cols, n) is NaN or infinite.
template <class RowOf>
void check_finite(const DataSource& src, const float* values, int64_t cols, int64_t n,
                  RowOf file_row) {
  for (int64_t r = 0; r < n; ++r) {
    const float* row = values + r * cols;
    if (std::all_of(row, row + cols, [](float v) { return std::isfinite(v); })) continue;
    const int64_t c = std::find_if(row, row + cols, [](float v) { return !std::isfinite(v); }) - row;
    bad_data(src, "row " + std::to_string(file_row(r)) + ", column " + std::to_string(c) + " is " +
                      (std::isnan(row[c]) ? "NaN" : "infinite"));
  }
}

// Reads `blocks` of rows and checks them; `file_row` maps a row read to its row in the file.
// The reads are independent, so a failure on one rank is agreed before the (collective) close.
template <class RowOf>
void read(const DataSource& src, const Comm& comm, int64_t cols,
          const std::vector<h5::RowBlocks>& blocks, float* out, RowOf file_row) {
  Opened o = open(src, comm);
  comm.agree([&] {
    int64_t rows = 0;
    for (const h5::RowBlocks& b : blocks) rows += b.count * b.block;
    try {
      h5::read_rows(o.dataset, cols, blocks, out);
    } catch (const h5::Failure& e) {
      bad_data(src, e.what());
    }
    check_finite(src, out, cols, rows, file_row);
  });
}

// The same verdict on every rank: they all read the same file's metadata.
DatasetShape check_shape(const DataSource& src, const h5::Handle& dataset) {
  const std::vector<int64_t> dims = h5::shape(dataset);
  if (dims.size() != 2)
    bad_data(src, "has " + std::to_string(dims.size()) +
                      " dimensions; a 2-D dataset (rows are samples) is needed");
  const h5::TypeClass type = h5::type_class(dataset);
  if (type != h5::TypeClass::floating)
    bad_data(src, "holds " + h5::type_name(dataset) +
                      " values; float32 or float64 is needed (convert integer data, e.g. "
                      "pixels / 255, before training)");
  if (dims[0] < 1) bad_data(src, "has no rows");
  if (dims[1] < 1) bad_data(src, "has no columns");
  return {dims[0], dims[1]};
}

}  // namespace

DatasetShape probe_dataset(const DataSource& src, const Comm& comm) {
  Opened o = open(src, comm);
  DatasetShape shape;
  comm.agree([&] { shape = check_shape(src, o.dataset); });
  return shape;
}

Shard::Shard(const DataSource& src, const DatasetShape& shape, const BatchPlan& plan,
             const Comm& comm)
    : cols_(shape.cols),
      values_(size_t(plan.shard_rows() * shape.cols)),
      step_rows_(size_t(plan.classes())) {
  // Full slots: one strided hyperslab; the last, partial slot: one more block.
  const int64_t full = plan.steps_per_epoch() - 1;
  const int64_t in_last = plan.shard_rows() - full * plan.classes();
  std::vector<h5::RowBlocks> blocks{
      {plan.first_class(), plan.global_batch(), full, plan.classes()},
      {plan.first_class() + full * plan.global_batch(), plan.global_batch(), 1, in_last}};
  read(src, comm, cols_, blocks, values_.data(), [&](int64_t r) { return plan.file_row(r); });
}

int64_t Shard::gather(const EpochOrder& order, int64_t t, float* batch) {
  const int64_t n = order.step_rows(t, step_rows_.data());
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(batch + i * cols_, values_.data() + step_rows_[size_t(i)] * cols_,
                sizeof(float) * size_t(cols_));
  return n;
}

AlignedVector<float> read_row_range(const DataSource& src, const DatasetShape& shape,
                                  RowRange range, const Comm& comm) {
  const int64_t n = range.end - range.begin;
  AlignedVector<float> values(size_t(n * shape.cols));
  read(src, comm, shape.cols, {{range.begin, 1, 1, n}}, values.data(),
       [&](int64_t r) { return range.begin + r; });
  return values;
}

}  // namespace aetrain
