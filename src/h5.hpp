// A thin, checked RAII layer over the HDF5 C API. Every call that can fail is checked once here
// and becomes an h5::Failure naming what we tried and HDF5's innermost reason.
// Private to the library's I/O layer (the HDF5 input format, the row writer, the model and
// checkpoint files, the output checks) and its tests: it is not installed, and no installed
// header includes HDF5's. Every function takes a process-wide lock: this HDF5 is not
// thread-safe, and a reader thread uses it.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
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

/// A checksum did not match what was read: the file is damaged. The message reads
/// "<object>: checksum mismatch: the file is damaged (<HDF5's reason>)".
class Damaged : public Failure {
 public:
  Damaged(const std::string& object, const std::string& reason)
      : Failure(object + ": checksum mismatch: the file is damaged (" + reason + ")"),
        object_(object) {}
  /// The dataset, group or attribute ("/train attribute 'config'") that is damaged.
  const std::string& object() const { return object_; }

 private:
  std::string object_;
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
/// Creates (truncates) a file for writing by this process alone, in HDF5's 1.8 file format:
/// its superblock and object headers (with every attribute: they stay in the header) carry
/// checksums that HDF5 verifies on every read. HDF5 1.8 and later read it.
/// The first `userblock` bytes (0, or a power of 2 from 512 on) are left to the caller: HDF5
/// and its readers skip them.
Handle create_file(const std::string& path, int64_t userblock = 0);
/// A new file built in memory (HDF5's core driver, nothing on disk): building it cannot fail
/// for want of disk space. close() ends it and gives its bytes as the file on disk would hold
/// them, in HDF5's own buffer (taken over, not copied: a large checkpoint is in memory once).
class MemoryFile {
 public:
  /// `userblock` and `checksummed` as create_file takes them (a file of the default format
  /// without).
  explicit MemoryFile(int64_t userblock = 0, bool checksummed = false);
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
/// Creates (truncates) a file that every rank of comm writes through MPI-IO. Collective.
Handle create_file(const std::string& path, const Comm& comm);
/// Opens an existing file for reading and writing through MPI-IO. Collective.
Handle open_file_rw(const std::string& path, const Comm& comm);
/// Opens an existing file of create_file's format for reading and writing by this process alone.
Handle open_file_rw(const std::string& path);
/// Flushes a file's buffers to the operating system.
void flush(const Handle& file);
/// Where the chunks of every chunked dataset of a file lie: (offset in the file, bytes), in
/// file order.
std::vector<std::pair<uint64_t, uint64_t>> chunk_extents(const Handle& file);
/// Asks the operating system to start writing what a file (opened by this process alone) has
/// written so far to its disk, without waiting: a later fsync then waits for less. Does nothing
/// where the system cannot.
void start_writeback(const Handle& file);

/// True if every link along `path` (like "/a/b/c") exists below `loc`. Throws Damaged where a
/// checksum along the way does not match.
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
/// Elements [first, first + n) of a 1-D dataset of numbers, converted (as HDF5 converts) to
/// int64 or double. Independent.
void read_range(const Handle& dataset, int64_t first, int64_t n, int64_t* out);
void read_range(const Handle& dataset, int64_t first, int64_t n, double* out);
/// True if a dataset's values are booleans as h5py stores them (an enum of FALSE and TRUE).
bool is_boolean(const Handle& dataset);
/// A 1-D dataset of strings (variable- or fixed-length), each up to its first NUL.
std::vector<std::string> read_strings(const Handle& loc, const std::string& path);
/// Writes a new 1-D dataset of variable-length UTF-8 strings. One process.
void write_strings(const Handle& loc, const std::string& path,
                   const std::vector<std::string>& values);
/// Copies the object `from` below `src` (a group with all it holds) to `to` below `dst`.
void copy_object(const Handle& src, const std::string& from, const Handle& dst,
                 const std::string& to);
/// The rows of a chunk of a chunked dataset; 0 for any other layout (contiguous, compact,
/// virtual).
int64_t chunk_rows(const Handle& dataset);
/// "1.10.8 (parallel)".
std::string library_version();
/// Whether this HDF5 reports chunk addresses from the end of the user block (before 1.14.4;
/// from 1.14.4 on they are file offsets: HDFGroup/hdf5 #3003).
bool chunk_addresses_skip_user_block();

/// The three ways a dataset's values can live outside the object itself.
enum class DependencyKind {
  external_link,   // a link on the dataset's path names another file
  virtual_source,  // a mapping of a virtual dataset names a source file and dataset
  external_file,   // a dataset's raw storage is in a plain file
};

/// Where the library looks for a file named in a file's metadata, in its own order (HDF5 1.10.8
/// and 1.14: H5F_prefix_open_file for links and virtual sources, H5D__build_file_prefix and
/// H5D__efl_read for raw files), with the environment as it is now. `holder` is the file that
/// names it, as it was opened; `name` the name as stored. The first candidate that opens is the
/// file; a candidate that exists but is not HDF5 ends the search (1.14 stops there with an error).
std::vector<std::string> candidates(DependencyKind kind, const std::string& holder,
                                    const std::string& name);

/// What a dataset depends on, found by following its path and metadata from its file.
struct Dependency {
  enum class Status {
    ok,
    no_file,      // no candidate exists (`tried` lists them)
    not_hdf5,     // `path` exists but is not an HDF5 file
    no_object,    // the file has no object `missing`
    not_dataset,  // a virtual source names a group
    unlimited,    // a printf-style (%b) or unlimited mapping: not followed
    too_deep,     // links and virtual datasets nest deeper than the limit
    failed,       // HDF5 failed while looking (`error` says how)
  };
  DependencyKind kind = DependencyKind::external_link;
  Status status = Status::ok;
  int parent = -1;     // the dependency this one was found through; -1: the dataset asked for
  std::string holder;  // the file that names it, as opened
  std::string object;  // in holder: the external link, or the dataset with the mapping or raw file
  std::string name;    // the file name as stored ("." for the holder itself)
  std::string target;  // the object named in that file (empty for raw files)
  std::vector<std::string> tried;  // the candidates looked at, in order
  std::string path;                // the file found (or the candidate that is not HDF5)
  std::string missing;             // no_object: the path in `path` that does not exist
  std::string error;               // failed: HDF5's reason
  // Virtual sources: the mapping's bounding boxes (first and last index in each dimension) in
  // the virtual dataset (whose dimensions follow) and in the source, or all of the source (whose
  // dimensions are then whatever they are when it is read), the values the mapping fills, and
  // what the source is.
  std::vector<int64_t> mapped_first, mapped_last, virtual_dims;
  std::vector<int64_t> selected_first, selected_last, source_dims;
  bool selects_all = false;
  int64_t mapped_values = 0;
  TypeClass source_type = TypeClass::other;
  std::string source_type_name;
  // Raw files: the bytes [offset, offset + bytes) of the file hold some of the values; the
  // file's size (-1: none).
  int64_t offset = 0, bytes = 0, file_bytes = -1;
};

/// Every external link, virtual source and raw file that reading `path` of the file `file`
/// (named as it is opened) goes through, found as HDF5 would find them, depth first. Sources
/// that are themselves virtual or reached through links are followed to `max_depth` levels. A
/// dependency that fails is not followed further. Empty when `path` leads nowhere without
/// crossing an external link (the caller reports that as a missing dataset).
std::vector<Dependency> dependencies(const std::string& file, const std::string& path,
                                     int max_depth);

/// How a new dataset is stored: contiguous, or in chunks that each carry HDF5's Fletcher-32
/// checksum (one chunk for the whole dataset, split by rows only where a chunk would pass
/// HDF5's 4 GiB limit; an empty dataset cannot be chunked and stays contiguous). Parallel HDF5
/// writes checksummed chunks collectively only.
enum class Storage { contiguous, checksummed };

/// Writes a table of sources (file, dataset, first_row, rows) as a new 1-D compound dataset.
/// Collective in a parallel file: every rank calls it, `write_values` on one of them.
void write_sources(const Handle& loc, const std::string& name,
                   const std::vector<SourceEntry>& sources, Storage storage,
                   bool write_values = true);
/// Reads a table written by write_sources. Throws Damaged where a checksum does not match.
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

/// Writes a new float32 dataset of the given dimensions (row-major data), checksummed
/// (Storage::checksummed). One process.
void write_dataset(const Handle& loc, const std::string& name, const std::vector<int64_t>& dims,
                   const float* data);
/// Writes a new float64 dataset of the given dimensions (row-major data), checksummed.
void write_dataset(const Handle& loc, const std::string& name, const std::vector<int64_t>& dims,
                   const double* data);
/// Writes a new int64 dataset, checksummed.
void write_dataset(const Handle& loc, const std::string& name, const std::vector<int64_t>& dims,
                   const int64_t* data);
/// HDF5's Fletcher-32 checksum of `bytes` bytes, as its filter stores it after a chunk
/// (little-endian), computed 20 times faster than HDF5's own loop.
uint32_t fletcher32(const unsigned char* data, size_t bytes);
/// The rows of each chunk of a checksummed dataset of these dimensions and bytes per value:
/// the rows spread evenly over the fewest chunks of about 1 MiB (all of a smaller dataset, one
/// row at least); 0 for an empty dataset.
int64_t checksummed_chunk_rows(const std::vector<int64_t>& dims, size_t value_size);
/// Reads a whole float dataset (converted to float32), checking its dimensions. A chunked
/// dataset must have every chunk in its chunk index (a damaged index loses a chunk, which HDF5
/// would read as zeros). Throws Damaged where a checksum does not match or a chunk is missing.
std::vector<float> read_dataset(const Handle& loc, const std::string& path,
                                const std::vector<int64_t>& dims);
/// The same in float64.
std::vector<double> read_dataset_f64(const Handle& loc, const std::string& path,
                                     const std::vector<int64_t>& dims);

/// The same in int64.
std::vector<int64_t> read_dataset_i64(const Handle& loc, const std::string& path,
                                      const std::vector<int64_t>& dims);
void write_attribute(const Handle& obj, const std::string& name, const std::string& value);
void write_attribute(const Handle& obj, const std::string& name, int64_t value);
void write_attribute(const Handle& obj, const std::string& name, double value);
void write_attribute(const Handle& obj, const std::string& name, const std::vector<int64_t>& value);
/// An attribute holding a 1-D array of variable-length UTF-8 strings (perhaps empty).
void write_attribute(const Handle& obj, const std::string& name,
                     const std::vector<std::string>& value);
/// Throws Damaged where the object's attribute storage is damaged.
bool has_attribute(const Handle& obj, const std::string& name);
std::string read_string_attribute(const Handle& obj, const std::string& name);
int64_t read_int_attribute(const Handle& obj, const std::string& name);
double read_double_attribute(const Handle& obj, const std::string& name);
std::vector<int64_t> read_int_array_attribute(const Handle& obj, const std::string& name);

/// Reads every object header, attribute index and dataset of a file (each dataset as
/// read_dataset does), but no attribute's value: those of variable-length strings are in the
/// global heap, which HDF5 parses without a check of its own and can overrun when it is
/// damaged. For a file known to be damaged (its own checksum did not match): returns the first
/// failure as a Damaged message naming the object, or "" when all of it reads.
std::string find_damage(const Handle& file);

}  // namespace aetrain::h5
