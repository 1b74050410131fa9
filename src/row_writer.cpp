#include "aetrain/row_writer.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "aetrain/error.hpp"
#include "aetrain/fault.hpp"
#include "aetrain/outputs.hpp"
#include "h5.hpp"

namespace aetrain {
namespace {

// Room for what HDF5 writes beside the rows: object headers, attributes, the group's links
// (tens of KiB in practice).
constexpr int64_t kMetadataRoom = int64_t(256) << 10;

int64_t element_count(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

void anndata_attributes(const h5::Handle& obj, const std::string& type,
                        const std::string& version) {
  h5::write_attribute(obj, "encoding-type", type);
  h5::write_attribute(obj, "encoding-version", version);
}

// A dataframe group of the index `names` and no columns.
void write_dataframe(const h5::Handle& file, const std::string& name,
                     const std::vector<std::string>& names) {
  const h5::Handle g = h5::create_group(file, name);
  anndata_attributes(g, "dataframe", "0.2.0");
  h5::write_attribute(g, "_index", std::string("_index"));
  h5::write_attribute(g, "column-order", std::vector<std::string>{});
  h5::write_strings(g, "_index", names);
  anndata_attributes(h5::open_dataset(g, "_index"), "string-array", "0.2.0");
}

// The AnnData file's groups around an obsm entry: what anndata reads from every version on.
void write_anndata_frame(const h5::Handle& file, const AnnDataFrame& frame) {
  anndata_attributes(h5::open_group(file, "/"), "anndata", "0.1.0");
  if (frame.obs_group.empty()) {
    write_dataframe(file, "obs", frame.obs_names);
  } else {
    const h5::Handle input = h5::open_file(frame.obs_file);
    h5::copy_object(input, frame.obs_group, file, "obs");
  }
  write_dataframe(file, "var", {});
  for (const char* dict : {"obsm", "varm", "obsp", "varp", "layers", "uns"})
    anndata_attributes(h5::create_group(file, dict), "dict", "0.1.0");
}

// Why an existing file cannot take an obsm entry of `rows` rows; "" when it can.
std::string not_anndata(const std::string& path, int64_t rows) {
  const h5::Handle f = h5::open_file(path);
  const h5::Handle root = h5::open_group(f, "/");
  if (!h5::has_attribute(root, "encoding-type") ||
      h5::read_string_attribute(root, "encoding-type") != "anndata" || !h5::exists(f, "/obs") ||
      !h5::exists(f, "/obsm"))
    return "is not an AnnData file with obs and obsm";
  const h5::Handle obs = h5::open_group(f, "/obs");
  const std::vector<std::string> index =
      h5::read_strings(obs, h5::read_string_attribute(obs, "_index"));
  if (int64_t(index.size()) != rows)
    return "holds " + std::to_string(index.size()) + " cells (obs); the codes are of " +
           std::to_string(rows) + " rows";
  return "";
}

}  // namespace

// Where a write stands, and how to undo it: the destructor closes every HDF5 object of the file
// on every rank (collectively: every error on the way is agreed by all ranks), then removes
// what was written unless it was committed.
struct RowWriter::Impl {
  const Comm comm;
  std::string file, dataset, partial, what;  // partial: where rows go until commit
  bool new_file = false, opened = false, replace = false, committed = false, has_sources = false;
  h5::Handle handle, data;

  explicit Impl(const Comm& c) : comm(c) {}
  ~Impl() {
    if (!committed && !new_file && data.id() >= 0) {
      data.reset();
      try {
        h5::remove_link(handle, partial);
        if (has_sources) h5::remove_link(handle, table(partial));
      } catch (const h5::Failure&) {
      }
    }
    data.reset();
    handle.reset();
    if (comm.rank() != 0) return;
    if (!committed && new_file) std::remove(tmp().c_str());
    if (opened && !new_file) release_space(file);
  }
  std::string tmp() const { return file + ".tmp"; }
  // The file HDF5 writes: FILE.tmp for a new file, else the file itself.
  std::string target() const { return new_file ? tmp() : file; }
  // The table of sources beside a dataset.
  static std::string table(const std::string& dataset) { return dataset + "_sources"; }
  // Removes a link if it is there (a stale partial one, or what is being replaced).
  void remove_if_there(const std::string& path) {
    if (h5::exists(handle, path)) h5::remove_link(handle, path);
  }
  [[noreturn]] void failed(const std::string& why) const {
    throw Error(ExitCode::write_failed,
                file + ": cannot write " + what + " (" + dataset + "): " + why);
  }
  template <class T>
  void attribute(const std::string& name, const T& value) {
    comm.agree([&] {
      try {
        h5::write_attribute(data, name, value);
      } catch (const h5::Failure& e) {
        failed(e.reason());
      }
    });
  }
  template <class S>
  void write(int64_t first, int64_t n, const S* values) {
    try {
      h5::write_rows(data, first, n, values);
    } catch (const h5::Failure& e) {
      // Open MPI's MPI-IO reports a write cut short by a full disk as a short count, with no
      // error: HDF5 then knows only that the write failed. The file system knows why.
      struct statvfs fs;
      if (!e.from_system() && ::statvfs(target().c_str(), &fs) == 0 &&
          int64_t(fs.f_bavail) * int64_t(fs.f_frsize) < (int64_t(1) << 20))
        failed(std::strerror(ENOSPC));
      failed(e.reason());
    }
    if (fault("rows-mid-write")) std::raise(SIGKILL);
  }
  // Rank 0 reserves the space of `bytes` more in the file (see RowWriter). Collective.
  void reserve(int64_t bytes) {
    comm.root_decides([&] {
      try {
        reserve_space(target(), bytes);
      } catch (const WriteFailure& e) {
        failed(e.what());
      }
    });
  }
};

RowWriter::RowWriter(const std::string& file, const std::string& dataset, std::vector<int64_t> dims,
                     bool overwrite, const Comm& comm, Precision precision, const std::string& what,
                     const AnnDataFrame* frame)
    : impl_(std::make_unique<Impl>(comm)) {
  Impl& w = *impl_;
  w.file = file;
  w.dataset = dataset;
  w.what = what;
  const int64_t bytes =
      element_count(dims) * int64_t(precision == Precision::float64 ? 8 : 4) + kMetadataRoom;
  // Rank 0 decides what is there (check_outputs has seen to it: nothing, an empty file or an
  // HDF5 file that takes datasets). A new file starts as an empty HDF5 file written by rank 0
  // with plain system calls; then, new or not, rank 0 reserves the space the rows and their
  // metadata need (reserve_space), so that a full disk is found before HDF5 writes a byte:
  // HDF5 1.10 cannot close a file whose writes failed (see h5::close_library), and a failure
  // half-way through adding a dataset could damage an existing file.
  int64_t exists = 0;
  comm.root_decides([&] {
    struct stat st;
    exists = ::stat(file.c_str(), &st) == 0 && st.st_size > 0;
    if (exists && frame) {
      std::string why;
      try {
        why = not_anndata(file, dims[0]);
      } catch (const h5::Failure& e) {
        why = std::string("cannot be read as an AnnData file: ") + e.what();
      }
      if (!why.empty())
        throw Error(ExitCode::usage, file + ": " + why + "; choose a new .h5ad --out");
    }
    if (!exists) {
      try {
        h5::MemoryFile empty;
        if (frame) write_anndata_frame(empty.file(), *frame);
        write_new_file(w.tmp(), empty.close());
      } catch (const WriteFailure& e) {
        w.failed(e.what());
      } catch (const h5::Failure& e) {
        w.failed(e.reason());
      }
    }
  });
  comm.broadcast(std::span<int64_t>(&exists, 1));
  w.new_file = !exists;
  w.reserve(bytes);
  w.opened = true;
  try {
    w.handle = h5::open_file_rw(w.target(), comm);
  } catch (const h5::Failure& e) {
    fail_replicated(ExitCode::write_failed, file + ": cannot write " + what + ": " + e.reason());
  }
  comm.agree([&] {
    w.replace = h5::exists(w.handle, dataset);
    if (w.replace && !overwrite)
      throw Error(ExitCode::usage,
                  file + ": " + dataset + " exists; pass --overwrite to replace it");
    w.partial = w.new_file ? dataset : dataset + ".partial";
    try {
      if (!w.new_file) {
        w.remove_if_there(w.partial);
        w.remove_if_there(Impl::table(w.partial));
      }
      w.data = h5::create_dataset(w.handle, w.partial, dims, precision == Precision::float64);
    } catch (const h5::Failure& e) {
      w.failed(e.reason());
    }
  });
}

RowWriter::~RowWriter() = default;

void RowWriter::write(int64_t first, int64_t n, const float* values) {
  impl_->write(first, n, values);
}

void RowWriter::write(int64_t first, int64_t n, const double* values) {
  impl_->write(first, n, values);
}

void RowWriter::attribute(const std::string& name, const std::string& value) {
  impl_->attribute(name, value);
}

void RowWriter::attribute(const std::string& name, int64_t value) { impl_->attribute(name, value); }

void RowWriter::sources(const std::vector<SourceEntry>& entries) {
  Impl& w = *impl_;
  int64_t bytes = kMetadataRoom;
  for (const SourceEntry& e : entries)
    bytes += int64_t(e.file.size() + e.dataset.size()) + 2 * int64_t(sizeof(int64_t));
  w.reserve(bytes);
  w.comm.agree([&] {
    try {
      h5::write_sources(w.handle, Impl::table(w.partial), entries, h5::Storage::contiguous,
                        w.comm.rank() == 0);
      h5::write_attribute(w.data, "sources", Impl::table(w.dataset));
    } catch (const h5::Failure& e) {
      w.failed(e.reason());
    }
  });
  w.has_sources = true;
}

void RowWriter::commit() {
  Impl& w = *impl_;
  if (fault("rows-before-commit")) std::raise(SIGKILL);
  w.comm.agree([&] {
    try {
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
      if (!w.handle.reset()) throw h5::Failure("closing the file failed");
    } catch (const h5::Failure& e) {
      w.failed(e.reason());
    }
  });
  w.comm.root_decides([&] {
    release_space(w.target());
    if (!w.new_file) return;
    try {
      publish_file(w.tmp(), w.file);
    } catch (const WriteFailure& e) {
      w.failed(e.what());
    }
  });
  w.committed = true;
}

}  // namespace aetrain
