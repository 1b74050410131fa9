#include "aetrain/data.hpp"


#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "aetrain/h5.hpp"
#include "aetrain/files.hpp"

namespace aetrain {
namespace {

[[noreturn]] void bad_data(const DataSource& src, const std::string& what) {
  throw Error(ExitCode::data, src.file + ": " + src.dataset + ": " + what);
}

// Every rank checks the file it can see; they agree before the collective open, so a rank that
// cannot see the file never leaves the others waiting in it.
void check_file(const DataSource& src, const Comm& comm) {
  comm.agree([&] {
    if (!std::filesystem::exists(src.file))
      throw Error(ExitCode::data, src.file + ": no such file");
    if (!h5::is_hdf5(src.file))
      throw Error(ExitCode::data, src.file + ": not an HDF5 file (or truncated)");
  });
}

// The same verdict on every rank: they all read the same file's metadata.
DatasetShape check_shape(const DataSource& src, const h5::Handle& dataset, Accept accept) {
  const std::vector<int64_t> dims = h5::shape(dataset);
  if (dims.size() != 2)
    bad_data(src, "has " + std::to_string(dims.size()) +
                      " dimensions; a 2-D dataset (rows are samples) is needed");
  const h5::TypeClass type = h5::type_class(dataset);
  if (type == h5::TypeClass::integer && accept == Accept::floats)
    bad_data(src, "holds " + h5::type_name(dataset) +
                      " values; integer data needs a normalization: --normalize minmax (or "
                      "standard) when training, stored with the model");
  if (type != h5::TypeClass::floating && type != h5::TypeClass::integer)
    bad_data(src, "holds " + h5::type_name(dataset) + " values; numbers are needed");
  if (dims[0] < 1) bad_data(src, "has no rows");
  if (dims[1] < 1) bad_data(src, "has no columns");
  const bool wide = type == h5::TypeClass::floating && h5::value_size(dataset) > sizeof(float);
  return {dims[0], dims[1], wide ? Precision::float64 : Precision::float32};
}

// The file row of the r-th row read from `blocks`.
int64_t file_row(const std::vector<RowBlocks>& blocks, int64_t r) {
  for (const RowBlocks& b : blocks) {
    if (r < b.count * b.block) return b.start + (r / b.block) * b.stride + r % b.block;
    r -= b.count * b.block;
  }
  return -1;
}

int64_t rows_in(const std::vector<RowBlocks>& blocks) {
  int64_t rows = 0;
  for (const RowBlocks& b : blocks) rows += b.count * b.block;
  return rows;
}

// The rows of `blocks` cut into pieces of at most `max_rows` rows, in file order.
std::vector<RowBlocks> pieces(const std::vector<RowBlocks>& blocks, int64_t max_rows) {
  std::vector<RowBlocks> out;
  for (const RowBlocks& b : blocks) {
    if (b.count * b.block == 0) continue;
    if (b.block >= max_rows) {  // each block in runs of max_rows rows
      for (int64_t i = 0; i < b.count; ++i)
        for (int64_t j = 0; j < b.block; j += max_rows)
          out.push_back({b.start + i * b.stride + j, 1, 1, std::min(max_rows, b.block - j)});
    } else {  // whole blocks, as many as fit
      const int64_t per_piece = max_rows / b.block;
      for (int64_t i = 0; i < b.count; i += per_piece)
        out.push_back({b.start + i * b.stride, b.stride, std::min(per_piece, b.count - i), b.block});
    }
  }
  return out;
}

}  // namespace

std::string hdf5_library_version() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
#ifdef H5_HAVE_PARALLEL
  const char* flavour = " (parallel)";
#else
  const char* flavour = " (serial)";
#endif
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release) +
         flavour;
}

int64_t rows_per_block(int64_t cols) {
  return std::max<int64_t>(1, (int64_t(4) << 20) / (int64_t(sizeof(double)) * std::max<int64_t>(1, cols)));
}

struct RowReader::Impl {
  h5::Handle file, dataset;
};

RowReader::RowReader(const DataSource& src, const Comm& comm, Accept accept)
    : src_(src), impl_(std::make_unique<Impl>()) {
  check_file(src, comm);
  try {
    impl_->file = h5::open_file(src.file, &comm);
  } catch (const h5::Failure& e) {
    fail_replicated(ExitCode::data, src.file + ": " + e.what());  // a collective open
  }
  comm.agree([&] {
    if (!h5::exists(impl_->file, src.dataset)) bad_data(src, "no such dataset");
    if (!h5::is_dataset(impl_->file, src.dataset)) bad_data(src, "is a group, not a dataset");
    try {
      impl_->dataset = h5::open_dataset(impl_->file, src.dataset);
    } catch (const h5::Failure& e) {
      bad_data(src, e.what());
    }
    shape_ = check_shape(src, impl_->dataset, accept);
  });
}

RowReader::~RowReader() = default;

template <class S>
void RowReader::check_finite(const std::vector<RowBlocks>& blocks, const S* values,
                             const char* how) const {
  const auto finite = [](S v) { return std::isfinite(v); };
  const int64_t rows = rows_in(blocks);
  for (int64_t r = 0; r < rows; ++r) {
    const S* row = values + r * shape_.cols;
    if (std::all_of(row, row + shape_.cols, finite)) continue;
    const int64_t c = std::find_if_not(row, row + shape_.cols, finite) - row;
    bad_data(src_, "row " + std::to_string(file_row(blocks, r)) + ", column " +
                       std::to_string(c) + " is " + (std::isnan(row[c]) ? "NaN" : "infinite") +
                       how);
  }
}

template <class S>
void RowReader::read_stored(const std::vector<RowBlocks>& blocks, S* out) const {
  try {
    h5::read_rows(impl_->dataset, shape_.cols, blocks, out);  // HDF5 converts to S
  } catch (const h5::Failure& e) {
    bad_data(src_, e.what());
  }
  check_finite(blocks, out, "");
}

void RowReader::read(const std::vector<RowBlocks>& blocks, double* out) const {
  read_stored(blocks, out);
}

void RowReader::read(const std::vector<RowBlocks>& blocks, float* out,
                     const Normalization& norm) const {
  if (norm.identity()) {
    read_stored(blocks, out);
    return;
  }
  // Through double, a piece at a time: a large offset must not cost float precision.
  std::vector<double> raw;
  for (const RowBlocks& piece : pieces(blocks, rows_per_block(shape_.cols))) {
    const int64_t rows = piece.count * piece.block;
    raw.resize(size_t(rows * shape_.cols));
    read({piece}, raw.data());
    normalize(norm, ConstMatrixMap<double>(raw.data(), shape_.cols, rows),
              MatrixMap<float>(out, shape_.cols, rows));
    check_finite({piece}, out, " after normalization (a value too large for float32)");
    out += rows * shape_.cols;
  }
}

DatasetShape probe_dataset(const DataSource& src, const Comm& comm, Accept accept) {
  return RowReader(src, comm, accept).shape();
}

struct RowWriter::Impl {
  const Comm comm;
  std::string file, dataset, partial;  // partial: where rows go until commit
  bool new_file = false, replace = false, committed = false;
  h5::Handle handle, data;

  explicit Impl(const Comm& c) : comm(c) {}
  std::string tmp() const { return file + ".tmp"; }
};

RowWriter::RowWriter(const std::string& file, const std::string& dataset,
                     std::vector<int64_t> dims, bool overwrite, const Comm& comm,
                     Precision precision)
    : impl_(std::make_unique<Impl>(comm)) {
  Impl& w = *impl_;
  w.file = file;
  w.dataset = dataset;
  // Rank 0 decides what is there; the file system may look different elsewhere.
  int64_t exists = 0;
  comm.root_decides([&] {
    if (const std::string why = unwritable_reason(file); !why.empty())
      throw Error(ExitCode::usage, file + ": " + why);
    exists = std::filesystem::exists(file);
    if (exists && !h5::is_hdf5(file))
      throw Error(ExitCode::usage, file + ": exists and is not an HDF5 file; not touching it");
  });
  comm.broadcast(std::span<int64_t>(&exists, 1));
  w.new_file = !exists;
  try {
    w.handle = w.new_file ? h5::create_file(w.tmp(), comm) : h5::open_file_rw(file, comm);
  } catch (const h5::Failure& e) {
    fail_replicated(ExitCode::usage, file + ": " + e.what());  // a collective open
  }
  comm.agree([&] {
    w.replace = h5::exists(w.handle, dataset);
    if (w.replace && !overwrite)
      throw Error(ExitCode::usage,
                  file + ": " + dataset + " exists; pass --overwrite to replace it");
    w.partial = w.new_file ? dataset : dataset + ".partial";
    if (!w.new_file && h5::exists(w.handle, w.partial)) h5::remove_link(w.handle, w.partial);
    w.data = h5::create_dataset(w.handle, w.partial, dims, precision == Precision::float64);
  });
}

RowWriter::~RowWriter() {
  Impl& w = *impl_;
  if (!w.committed && !w.new_file && w.data.id() >= 0) {
    w.data.reset();
    try {
      h5::remove_link(w.handle, w.partial);
    } catch (const h5::Failure&) {
    }
  }
  w.data.reset();
  w.handle.reset();
  if (!w.committed && w.new_file && w.comm.rank() == 0) std::remove(w.tmp().c_str());
}

namespace {

template <class S>
void write_checked(const h5::Handle& data, const std::string& file, const std::string& dataset,
                   int64_t first, int64_t n, const S* values) {
  const std::vector<int64_t> dims = h5::shape(data);
  int64_t row_size = 1;
  for (size_t i = 1; i < dims.size(); ++i) row_size *= dims[i];
  try {
    h5::write_rows(data, first, n, row_size, values);
  } catch (const h5::Failure& e) {
    throw Error(ExitCode::other, file + ": " + dataset + ": " + e.what());
  }
}

}  // namespace

void RowWriter::write(int64_t first, int64_t n, const float* values) {
  write_checked(impl_->data, impl_->file, impl_->dataset, first, n, values);
}

void RowWriter::write(int64_t first, int64_t n, const double* values) {
  write_checked(impl_->data, impl_->file, impl_->dataset, first, n, values);
}

void RowWriter::attribute(const std::string& name, const std::string& value) {
  h5::write_attribute(impl_->data, name, value);
}

void RowWriter::attribute(const std::string& name, int64_t value) {
  h5::write_attribute(impl_->data, name, value);
}

void RowWriter::commit() {
  Impl& w = *impl_;
  w.comm.agree([&] {
    w.data.reset();
    if (!w.new_file) {
      if (w.replace) h5::remove_link(w.handle, w.dataset);
      h5::move_link(w.handle, w.partial, w.dataset);
    }
    h5::flush(w.handle);
    if (!w.handle.reset()) throw h5::Failure("closing " + w.file + " failed");
  });
  w.comm.root_decides([&] {
    if (w.new_file) publish_file(w.tmp(), w.file);
  });
  w.committed = true;
}

Shard::Shard(const DataSource& src, const BatchPlan& plan, const Normalization& norm,
             const Comm& comm)
    : step_rows_(size_t(plan.classes())) {
  RowReader reader(src, comm, accepted_by(norm.kind));
  cols_ = reader.shape().cols;
  values_.resize(size_t(plan.shard_rows() * cols_));
  // Full slots: one strided hyperslab; the last, partial slot: one more block.
  const int64_t full = plan.steps_per_epoch() - 1;
  const int64_t in_last = plan.shard_rows() - full * plan.classes();
  comm.agree([&] {
    reader.read({{plan.first_class(), plan.global_batch(), full, plan.classes()},
                 {plan.first_class() + full * plan.global_batch(), plan.global_batch(), 1, in_last}},
                values_.data(), norm);
  });
}

int64_t Shard::gather(const EpochOrder& order, int64_t t, float* batch) {
  const int64_t n = order.step_rows(t, step_rows_.data());
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(batch + i * cols_, values_.data() + step_rows_[size_t(i)] * cols_,
                sizeof(float) * size_t(cols_));
  return n;
}

std::pair<double, double> Shard::range() const {
  if (values_.empty())
    return {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()};
  const auto [lo, hi] = std::minmax_element(values_.begin(), values_.end());
  return {*lo, *hi};
}

AlignedVector<float> read_even_share(const DataSource& src, const Normalization& norm,
                                     const Comm& comm) {
  RowReader reader(src, comm, accepted_by(norm.kind));
  const RowRange range = even_split(reader.shape().rows, comm.rank(), comm.size());
  AlignedVector<float> values(size_t((range.end - range.begin) * reader.shape().cols));
  comm.agree([&] { reader.read(range.begin, range.end - range.begin, values.data(), norm); });
  return values;
}

Moments dataset_moments(const DataSource& src, Scatter kind, Accept accept, int64_t block_rows,
                        const Comm& comm) {
  RowReader reader(src, comm, accept);
  const int64_t cols = reader.shape().cols;
  const RowRange share = even_split(reader.shape().rows, comm.rank(), comm.size());
  Moments local(cols, kind);
  std::vector<double> block(size_t(std::max<int64_t>(1, block_rows) * cols));
  comm.agree([&] {
    for (int64_t first = share.begin; first < share.end; first += block_rows) {
      const int64_t n = std::min(block_rows, share.end - first);
      reader.read(first, n, block.data());
      local.add(ConstMatrixMap<double>(block.data(), cols, n));
    }
  });
  return merge_over_ranks(local, comm);
}

}  // namespace aetrain
