#include "aetrain/data.hpp"


#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "aetrain/h5.hpp"
#include "aetrain/error.hpp"
#include "aetrain/files.hpp"
#include "aetrain/sampling.hpp"

namespace aetrain {

std::string hdf5_library_version() { return h5::library_version(); }

struct RowWriter::Impl {
  const Comm comm;
  std::string file, dataset, partial;  // partial: where rows go until commit
  bool new_file = false, replace = false, committed = false, has_sources = false;
  h5::Handle handle, data;

  explicit Impl(const Comm& c) : comm(c) {}
  std::string tmp() const { return file + ".tmp"; }
  // The table of sources beside a dataset.
  static std::string table(const std::string& dataset) { return dataset + "_sources"; }
  // Removes a link if it is there (a stale partial one, or what is being replaced).
  void remove_if_there(const std::string& path) {
    if (h5::exists(handle, path)) h5::remove_link(handle, path);
  }
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
    if (!w.new_file) {
      w.remove_if_there(w.partial);
      w.remove_if_there(Impl::table(w.partial));
    }
    w.data = h5::create_dataset(w.handle, w.partial, dims, precision == Precision::float64);
  });
}

RowWriter::~RowWriter() {
  Impl& w = *impl_;
  if (!w.committed && !w.new_file && w.data.id() >= 0) {
    w.data.reset();
    try {
      h5::remove_link(w.handle, w.partial);
      if (w.has_sources) h5::remove_link(w.handle, Impl::table(w.partial));
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
  try {
    h5::write_rows(data, first, n, values);
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

void RowWriter::sources(const std::vector<SourceEntry>& entries) {
  Impl& w = *impl_;
  w.comm.agree([&] {
    h5::write_sources(w.handle, Impl::table(w.partial), entries, h5::Storage::contiguous,
                      w.comm.rank() == 0);
    h5::write_attribute(w.data, "sources", Impl::table(w.dataset));
  });
  w.has_sources = true;
}

void RowWriter::commit() {
  Impl& w = *impl_;
  w.comm.agree([&] {
    w.data.reset();
    if (!w.new_file) {
      if (w.replace) {
        h5::remove_link(w.handle, w.dataset);
        w.remove_if_there(Impl::table(w.dataset));
      }
      h5::move_link(w.handle, w.partial, w.dataset);
      if (w.has_sources) h5::move_link(w.handle, Impl::table(w.partial), Impl::table(w.dataset));
    }
    h5::flush(w.handle);
    if (!w.handle.reset()) throw h5::Failure("closing " + w.file + " failed");
  });
  w.comm.root_decides([&] {
    if (w.new_file) publish_file(w.tmp(), w.file);
  });
  w.committed = true;
}

Moments dataset_moments(const Sources& sources, Scatter kind, int64_t block_rows,
                        const Comm& comm) {
  SourceReader reader(sources);
  const int64_t cols = sources.cols;
  const RowRange share = even_split(sources.rows, comm.rank(), comm.size());
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
