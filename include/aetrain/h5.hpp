// A thin, checked RAII layer over the HDF5 C API. Every call that can fail is checked once here
// and becomes an h5::Failure naming what we tried and HDF5's innermost reason.
// Only the HDF5 modules (sources, data, checkpoint) and tests include this header. Every
// function takes a process-wide lock: this HDF5 is not thread-safe, and a reader thread uses it.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "aetrain/comm.hpp"
#include "aetrain/sources.hpp"

namespace aetrain::h5 {

/// An HDF5 call failed. what() says what we tried and why; reason() says why alone, on one
/// line: the system's reason where HDF5 recorded one (an errno, an MPI-IO error string), else
/// HDF5's own innermost message.
class Failure : public std::runtime_error {
 public:
  explicit Failure(const std::string& what, const std::string& reason = "",
                   bool from_system = false)
      : std::runtime_error(reason.empty() ? what : what + " (" + reason + ")"),
        reason_(reason.empty() ? what : reason),
        from_system_(from_system) {}
  const std::string& reason() const { return reason_; }
  /// True when reason() is the system's (an errno or an MPI-IO error string), not HDF5's.
  bool from_system() const { return from_system_; }

 private:
  std::string reason_;
  bool from_system_;
};

/// Owns one HDF5 identifier and closes it with the right H5?close.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  hid_t id() const { return id_; }
  /// Closes now; returns false when HDF5 reports a failure on close (data may not be on disk).
  /// A file that HDF5 failed to close stays in its tables, half torn down: see close_library.
  bool reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

/// The element type of a dataset, as far as we care.
enum class TypeClass { floating, integer, other };

/// Turns off HDF5's printing of its error stack (we report errors ourselves). Call once.
void quiet_errors();
/// Closes every object HDF5 still holds and shuts the library down; true when it did. Call once,
/// at the end, before MPI ends. HDF5 1.10 keeps a file whose close failed (its data or metadata
/// could not be written) in its tables after tearing most of it down, and its shutdown then
/// crashes on it: with such a file this returns false and leaves the library alone, and the
/// caller must end the process without shutting HDF5 down (for MPI: MPI_Abort, never
/// MPI_Finalize, whose clean-up shuts HDF5 down).
bool close_library();

/// True if `path` is a readable HDF5 file.
bool is_hdf5(const std::string& path);
/// Opens an existing file read-only for this process alone (HDF5's default driver).
Handle open_file(const std::string& path);
/// Opens the image of a file held in memory, read-only (HDF5 copies the bytes).
Handle open_image(const std::string& bytes);
/// A new file built in memory (HDF5's core driver, nothing on disk): building it cannot fail
/// for want of disk space. close() ends it and gives its bytes as the file on disk would hold
/// them, in HDF5's own buffer (taken over, not copied: a large checkpoint is in memory once).
class MemoryFile {
 public:
  MemoryFile();
  ~MemoryFile();
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;
  /// The open file, to write into.
  const Handle& file() const { return file_; }
  /// Closes the file and returns its bytes, valid while this object lives.
  std::string_view close();

 private:
  struct Buffer;
  std::unique_ptr<Buffer> buffer_;
  Handle file_;
};
/// Creates (truncates) a file for writing by this process alone.
Handle create_file(const std::string& path);
/// Creates (truncates) a file that every rank of comm writes through MPI-IO. Collective.
Handle create_file(const std::string& path, const Comm& comm);
/// Opens an existing file for reading and writing through MPI-IO. Collective.
Handle open_file_rw(const std::string& path, const Comm& comm);
/// Flushes a file's buffers to the operating system.
void flush(const Handle& file);

/// True if every link along `path` (like "/a/b/c") exists below `loc`.
bool exists(const Handle& loc, const std::string& path);
Handle open_group(const Handle& loc, const std::string& path);
Handle create_group(const Handle& loc, const std::string& name);
Handle open_dataset(const Handle& loc, const std::string& path);
/// The same, for reading each chunk once (in blocks of whole chunks): no chunk cache, whose 1 MiB
/// per dataset would only hold chunks that are never read again.
Handle open_dataset_to_stream(const Handle& loc, const std::string& path);
/// True if `path` names a dataset (not a group).
bool is_dataset(const Handle& loc, const std::string& path);

/// The dimensions of a dataset.
std::vector<int64_t> shape(const Handle& dataset);
TypeClass type_class(const Handle& dataset);
/// Bytes per stored value.
size_t value_size(const Handle& dataset);
/// A person's description of the element type, e.g. "64-bit float", "8-bit unsigned integer".
std::string type_name(const Handle& dataset);

/// Reads rows [first, first + n) of a 2-D dataset into out (row after row), converting to float
/// or double. Independent: only this process reads.
void read_rows(const Handle& dataset, int64_t first, int64_t n, float* out);
void read_rows(const Handle& dataset, int64_t first, int64_t n, double* out);
/// The rows of a chunk of a chunked dataset; 0 for any other layout (contiguous, compact,
/// virtual).
int64_t chunk_rows(const Handle& dataset);
/// "1.10.8 (parallel)".
std::string library_version();

/// Writes a table of sources (file, dataset, first_row, rows) as a new 1-D compound dataset.
/// Collective in a parallel file: every rank calls it, `write_values` on one of them.
void write_sources(const Handle& loc, const std::string& name,
                   const std::vector<SourceEntry>& sources, bool write_values = true);
/// Reads a table written by write_sources.
std::vector<SourceEntry> read_sources(const Handle& loc, const std::string& name);

/// Creates an empty contiguous float32 (or, with `float64`, float64) dataset, and any missing
/// groups on its path.
Handle create_dataset(const Handle& loc, const std::string& path, const std::vector<int64_t>& dims,
                      bool float64 = false);
/// Writes rows [first, first + n) of a dataset (row-major values). Independent.
void write_rows(const Handle& dataset, int64_t first, int64_t n, const float* values);
void write_rows(const Handle& dataset, int64_t first, int64_t n, const double* values);
/// Removes the link `path`; renames the link `from` to `to`. Collective in parallel files.
void remove_link(const Handle& loc, const std::string& path);
void move_link(const Handle& loc, const std::string& from, const std::string& to);

/// Writes a new float32 dataset of the given dimensions (row-major data).
void write_dataset(const Handle& loc, const std::string& name, const std::vector<int64_t>& dims,
                   const float* data);
/// Writes a new float64 dataset of the given dimensions (row-major data).
void write_dataset(const Handle& loc, const std::string& name, const std::vector<int64_t>& dims,
                   const double* data);
/// Reads a whole float dataset (converted to float32), checking its dimensions.
std::vector<float> read_dataset(const Handle& loc, const std::string& path,
                                const std::vector<int64_t>& dims);
/// The same in float64.
std::vector<double> read_dataset_f64(const Handle& loc, const std::string& path,
                                     const std::vector<int64_t>& dims);

void write_attribute(const Handle& obj, const std::string& name, const std::string& value);
void write_attribute(const Handle& obj, const std::string& name, int64_t value);
void write_attribute(const Handle& obj, const std::string& name, double value);
void write_attribute(const Handle& obj, const std::string& name,
                     const std::vector<int64_t>& value);
bool has_attribute(const Handle& obj, const std::string& name);
std::string read_string_attribute(const Handle& obj, const std::string& name);
int64_t read_int_attribute(const Handle& obj, const std::string& name);
double read_double_attribute(const Handle& obj, const std::string& name);
std::vector<int64_t> read_int_array_attribute(const Handle& obj, const std::string& name);

}  // namespace aetrain::h5
