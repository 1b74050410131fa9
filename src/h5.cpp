#include "h5.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <numeric>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace aetrain::h5 {
namespace {

// This HDF5 is not built thread-safe (parallel builds cannot be), and training reads blocks on
// a thread of its own while the main thread writes checkpoints: every call into the library
// goes through a function of this file, and each takes this lock for its duration.
std::recursive_mutex& library_mutex() {
  static std::recursive_mutex m;
  return m;
}
struct Guard {
  std::lock_guard<std::recursive_mutex> lock{library_mutex()};
};

// Files that HDF5 failed to close (close_library).
int unclosed_files = 0;

// Text as one line: control characters (the newline of a ctime inside a message) become spaces,
// runs of spaces one, none at either end.
std::string one_line(const std::string& text) {
  std::string out;
  for (char c : text) {
    const bool space = static_cast<unsigned char>(c) < 0x20 || c == ' ' || c == 0x7f;
    if (space) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// The text between the first `open` after `key` and the next `close`, or "".
std::string after(const std::string& text, const std::string& key, char open, char close) {
  const size_t at = text.find(key);
  if (at == std::string::npos) return "";
  const size_t start = text.find(open, at + key.size());
  if (start == std::string::npos) return "";
  const size_t end = text.find(close, start + 1);
  return text.substr(start + 1, end == std::string::npos ? std::string::npos : end - start - 1);
}

// What the error stack says about the last failure, from the innermost entry out. HDF5 has no
// error code of its own for a checksum that does not match: its messages say "data error
// detected by Fletcher32 checksum" (a chunk) and "incorrect metadata checksum after all read
// attempts" (a superblock, object header, heap block or B-tree node). HDF5 1.14 reports a
// chunk whose filter's check failed (Fletcher-32 on aetrain's files) only as "filter returned
// failure during read".
struct Reason {
  std::string system;     // the system's reason: strerror of an errno that a driver recorded
  std::string mpi;        // an MPI-IO error string
  std::string innermost;  // HDF5's deepest description
  std::string checksum;   // the description that says a checksum did not match, if any
};

herr_t read_entry(unsigned n, const H5E_error2_t* e, void* out) {
  Reason& r = *static_cast<Reason*>(out);
  const std::string desc = e->desc ? e->desc : "";
  if (n == 0) r.innermost = desc;
  if (r.checksum.empty() && (desc.find("checksum") != std::string::npos ||
                             desc.find("filter returned failure during read") != std::string::npos))
    r.checksum = desc;
  // The sec2 and core drivers: "... errno = 28, error message = 'No space left on device', ...".
  if (r.system.empty()) {
    const size_t at = desc.find("errno = ");
    if (at != std::string::npos) {
      const int code = std::atoi(desc.c_str() + at + 8);
      if (code > 0) r.system = std::strerror(code);
    }
  }
  // The MPI-IO driver: an entry of its own, "MPI error string is '...'" (which may run over
  // several lines: the first says what went wrong).
  if (r.mpi.empty() && e->min_num == H5E_MPIERRSTR) {
    std::string text = after(desc, "error string is", '\'', '\'');
    r.mpi = text.substr(0, text.find('\n'));
  }
  return 0;
}

// Reads the error stack and clears it.
Reason reason() {
  Reason r;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, read_entry, &r);
  H5Eclear2(H5E_DEFAULT);
  return r;
}

// Throws for the last failure: Damaged naming `object` where a checksum did not match (or
// naming `what` without an object), else Failure with the system's reason where there is one.
[[noreturn]] void fail(const std::string& what, const std::string& object = "") {
  const Reason r = reason();
  if (!r.checksum.empty()) throw Damaged(object.empty() ? what : object, one_line(r.checksum));
  const bool system = !r.system.empty() || !r.mpi.empty();
  throw Failure(what,
                one_line(!r.system.empty() ? r.system
                         : !r.mpi.empty()  ? r.mpi
                                           : r.innermost),
                system);
}

// Clears a failure that means "no" (a link or attribute that is not there), but not a damaged
// file: that throws Damaged naming `object`.
void clear_unless_damaged(const std::string& object) {
  const Reason why = reason();
  if (!why.checksum.empty()) throw Damaged(object, why.checksum);
}

hid_t check_id(hid_t id, const std::string& what, const std::string& object = "") {
  if (id < 0) fail(what, object);
  return id;
}

void check(herr_t rc, const std::string& what, const std::string& object = "") {
  if (rc < 0) fail(what, object);
}

// The path of an open object ("/train"), for messages.
std::string name_of(hid_t obj) {
  const ssize_t n = H5Iget_name(obj, nullptr, 0);
  if (n <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return "?";
  }
  std::string name(size_t(n) + 1, '\0');
  H5Iget_name(obj, name.data(), name.size());
  name.resize(size_t(n));
  return name;
}

// `path` below `loc` as a path from the root, for messages.
std::string path_below(const Handle& loc, const std::string& path) {
  if (path.starts_with('/')) return path;
  const std::string base = name_of(loc.id());
  return base.ends_with('/') ? base + path : base + "/" + path;
}

std::string attribute_name(hid_t obj, const std::string& name) {
  return name_of(obj) + " attribute '" + name + "'";
}

// HDF5 prints its error stack on every failure unless told not to; we report errors ourselves.
void quiet_once() {
  static const bool done = (quiet_errors(), true);
  (void)done;
}

Handle space(hid_t id) { return {check_id(id, "dataspace"), H5Sclose}; }
Handle type(hid_t id) { return {check_id(id, "datatype"), H5Tclose}; }
Handle plist(hid_t cls) { return {check_id(H5Pcreate(cls), "property list"), H5Pclose}; }

// File access through MPI-IO on comm.
Handle mpio_access(const Comm& comm) {
  Handle fapl = plist(H5P_FILE_ACCESS);
  check(H5Pset_fapl_mpio(fapl.id(), *static_cast<const MPI_Comm*>(comm.native()), MPI_INFO_NULL),
        "MPI-IO file access");
  return fapl;
}

Handle string_type() {
  Handle t = type(H5Tcopy(H5T_C_S1));
  check(H5Tset_size(t.id(), H5T_VARIABLE), "string type");
  check(H5Tset_cset(t.id(), H5T_CSET_UTF8), "string type");
  return t;
}

Handle simple_space(const std::vector<int64_t>& dims) {
  std::vector<hsize_t> d(dims.begin(), dims.end());
  return space(H5Screate_simple(int(d.size()), d.data(), nullptr));
}

// Creation properties without modification times, so that equal contents give equal files.
// Attributes stay in the object header however many there are: the 1.8 format would move more
// than 8 into a heap of their own ("dense" storage), which HDF5 1.10's H5Ocopy (h5py's
// Group.copy) crashes on when they hold strings.
Handle untimed(hid_t cls) {
  Handle p = plist(cls);
  check(H5Pset_obj_track_times(p.id(), false), "property list");
  check(H5Pset_attr_phase_change(p.id(), 65535, 0), "property list");
  return p;
}

// Chunks of about 1 MiB: each is checksummed in the CPU's cache on its way to the file, and a
// read checks them one at a time. (HDF5 keeps a chunk's size in 32 bits: far above.)
constexpr uint64_t kChunkBytes = uint64_t(1) << 20;

// Creation properties for a new dataset stored as `storage` says.
Handle creation(Storage storage, const std::vector<int64_t>& dims, size_t value_size) {
  Handle dcpl = untimed(H5P_DATASET_CREATE);
  const int64_t rows = checksummed_chunk_rows(dims, value_size);
  if (storage == Storage::contiguous || rows == 0) return dcpl;
  std::vector<hsize_t> chunk(dims.begin(), dims.end());
  chunk[0] = hsize_t(rows);
  check(H5Pset_chunk(dcpl.id(), int(chunk.size()), chunk.data()), "chunked layout");
  check(H5Pset_fletcher32(dcpl.id()), "Fletcher-32 checksum");
  return dcpl;
}

// Every chunk of a chunked dataset must be in its chunk index: HDF5 reads a chunk that is not
// there as the fill value (zeros) without a word, and the version-1 B-tree that indexes the
// chunks of a 1.8-format file has no checksum, so a damaged key would lose its chunk. Nor may
// a chunk be marked to skip its filters (the checksum among them).
void check_chunks(const Handle& dataset, const std::string& object) {
  Handle dcpl(check_id(H5Dget_create_plist(dataset.id()), "creation properties", object), H5Pclose);
  if (H5Pget_layout(dcpl.id()) != H5D_CHUNKED) return;
  Handle s = space(H5Dget_space(dataset.id()));
  const int rank = H5Sget_simple_extent_ndims(s.id());
  if (rank <= 0) return;
  const size_t n = size_t(rank);
  std::vector<hsize_t> dims(n, 0), chunk(n, 0), at(n, 0);
  check(H5Sget_simple_extent_dims(s.id(), dims.data(), nullptr), "dataspace dims", object);
  if (H5Pget_chunk(dcpl.id(), rank, chunk.data()) != rank) fail("chunk dims", object);
  if (std::find(dims.begin(), dims.end(), hsize_t(0)) != dims.end()) return;
  for (;;) {  // every chunk's first element, the last dimension fastest
    unsigned filters = 0;
    haddr_t address = HADDR_UNDEF;
    hsize_t bytes = 0;
    check(H5Dget_chunk_info_by_coord(dataset.id(), at.data(), &filters, &address, &bytes),
          "chunk index", object);
    if (address == HADDR_UNDEF || filters != 0) {
      std::string where;
      for (hsize_t x : at) where += (where.empty() ? "" : ", ") + std::to_string(x);
      throw Damaged(object, "the chunk at [" + where + "] is " +
                                (address == HADDR_UNDEF ? "missing from the chunk index"
                                                        : "marked to skip its checksum"));
    }
    int d = rank - 1;
    for (; d >= 0; --d) {
      at[size_t(d)] += chunk[size_t(d)];
      if (at[size_t(d)] < dims[size_t(d)]) break;
      at[size_t(d)] = 0;
    }
    if (d < 0) return;
  }
}

void write_attr(const Handle& obj, const std::string& name, hid_t file_type, hid_t mem_type,
                const Handle& where, const void* value) {
  Handle a(
      check_id(H5Acreate2(obj.id(), name.c_str(), file_type, where.id(), H5P_DEFAULT, H5P_DEFAULT),
               "create attribute " + name),
      H5Aclose);
  check(H5Awrite(a.id(), mem_type, value), "write attribute " + name);
}

Handle open_attr(const Handle& obj, const std::string& name) {
  if (!has_attribute(obj, name)) throw Failure("attribute '" + name + "' is missing");
  return {check_id(H5Aopen(obj.id(), name.c_str(), H5P_DEFAULT), "open attribute " + name,
                   attribute_name(obj.id(), name)),
          H5Aclose};
}

int64_t element_count(const Handle& attr) {
  Handle s = space(H5Aget_space(attr.id()));
  const hssize_t n = H5Sget_simple_extent_npoints(s.id());
  if (n < 0) fail("attribute size");
  return n;
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  const Guard guard;
  if (this != &o) {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

bool Handle::reset() {
  const Guard guard;
  bool ok = true;
  if (id_ >= 0 && close_) ok = close_(id_) >= 0;
  if (!ok && close_ == &H5Fclose) ++unclosed_files;
  id_ = H5I_INVALID_HID;
  if (!ok) H5Eclear2(H5E_DEFAULT);
  return ok;
}

void quiet_errors() {
  const Guard guard;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

bool close_library() {
  const Guard guard;
  if (unclosed_files > 0) return false;
  return H5close() >= 0;
}

bool is_hdf5(const std::string& path) {
  const Guard guard;
  quiet_once();
  const htri_t r = H5Fis_hdf5(path.c_str());
  if (r < 0) H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

Handle open_file(const std::string& path) {
  const Guard guard;
  quiet_once();
  Handle fapl = plist(H5P_FILE_ACCESS);
  // No sieve buffer: reads of whole blocks in any order would each pull 64 KiB around them.
  check(H5Pset_sieve_buf_size(fapl.id(), 0), "file access");
  return {check_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.id()), "cannot open " + path),
          H5Fclose};
}

Handle open_image(const std::string& bytes) {
  const Guard guard;
  quiet_once();
  Handle fapl = plist(H5P_FILE_ACCESS);
  check(H5Pset_fapl_core(fapl.id(), 1 << 20, false), "memory file access");
  check(H5Pset_file_image(fapl.id(), const_cast<char*>(bytes.data()), bytes.size()), "file image");
  return {check_id(H5Fopen("in-memory image", H5F_ACC_RDONLY, fapl.id()), "cannot open",
                   "the superblock or root group"),
          H5Fclose};
}

// The core driver's memory, through HDF5's file image callbacks: allocated and grown as usual,
// but at the file's close kept for its owner instead of freed.
struct MemoryFile::Buffer {
  void* taken = nullptr;  // the memory the driver gave up at close
  size_t size = 0;        // the size of the driver's memory now

  static void* allocate(size_t size, H5FD_file_image_op_t, void* self) {
    static_cast<Buffer*>(self)->size = size;
    return std::malloc(size);
  }
  static void* copy(void* to, const void* from, size_t size, H5FD_file_image_op_t, void*) {
    return std::memcpy(to, from, size);
  }
  static void* resize(void* at, size_t size, H5FD_file_image_op_t, void* self) {
    void* grown = std::realloc(at, size);
    if (grown) static_cast<Buffer*>(self)->size = size;
    return grown;
  }
  static herr_t release(void* at, H5FD_file_image_op_t op, void* self) {
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE)
      static_cast<Buffer*>(self)->taken = at;
    else
      std::free(at);
    return 0;
  }
  static void* share(void* self) { return self; }  // property list copies share the buffer
  static herr_t keep(void*) { return 0; }
};

namespace {

// The 1.8 format at least (superblock version 2, object headers version 2: checksummed) and at
// most (the chunk index stays a version-1 B-tree, which HDF5 1.8 reads; the 1.10 format's
// indexes would not open there).
void checksummed_format(const Handle& fapl) {
  check(H5Pset_libver_bounds(fapl.id(), H5F_LIBVER_V18, H5F_LIBVER_V18), "file format");
}

}  // namespace

MemoryFile::MemoryFile(int64_t userblock, bool checksummed) : buffer_(std::make_unique<Buffer>()) {
  const Guard guard;
  quiet_once();
  static int files = 0;  // the core driver tells open files apart by name
  Handle fcpl = untimed(H5P_FILE_CREATE);
  if (userblock > 0) check(H5Pset_userblock(fcpl.id(), hsize_t(userblock)), "user block");
  Handle fapl = plist(H5P_FILE_ACCESS);
  if (checksummed) checksummed_format(fapl);
  check(H5Pset_fapl_core(fapl.id(), 1 << 20, /*backing_store=*/false), "memory file access");
  H5FD_file_image_callbacks_t callbacks = {&Buffer::allocate, &Buffer::copy,  &Buffer::resize,
                                           &Buffer::release,  &Buffer::share, &Buffer::keep,
                                           buffer_.get()};
  check(H5Pset_file_image_callbacks(fapl.id(), &callbacks), "memory file access");
  const std::string name = "in-memory file " + std::to_string(++files);
  file_ = Handle(check_id(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, fcpl.id(), fapl.id()),
                          "cannot create a file in memory"),
                 H5Fclose);
}

MemoryFile::~MemoryFile() {
  file_.reset();
  std::free(buffer_->taken);
}

std::string_view MemoryFile::close() {
  const Guard guard;
  check(H5Fflush(file_.id(), H5F_SCOPE_LOCAL), "flush");
  // The image's size (the end of its allocated space); closing may shrink it (unused space at
  // the end given back) but never grow it, and the driver's memory never ends before it.
  // H5Fget_file_image counts from the end of the user block; the driver's memory holds it.
  hsize_t userblock = 0;
  {
    Handle fcpl(check_id(H5Fget_create_plist(file_.id()), "creation properties"), H5Pclose);
    check(H5Pget_userblock(fcpl.id(), &userblock), "user block");
  }
  const ssize_t image = H5Fget_file_image(file_.id(), nullptr, 0);
  if (image < 0) fail("file image");
  const size_t size = size_t(image) + size_t(userblock);
  if (!file_.reset() || !buffer_->taken) throw Failure("closing the file in memory failed");
  return {static_cast<const char*>(buffer_->taken), std::min(size, buffer_->size)};
}

Handle create_file(const std::string& path, const Comm& comm) {
  const Guard guard;
  quiet_once();
  Handle fapl = mpio_access(comm);
  return {check_id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id()),
                   "cannot create " + path),
          H5Fclose};
}

Handle open_file_rw(const std::string& path, const Comm& comm) {
  const Guard guard;
  quiet_once();
  Handle fapl = mpio_access(comm);
  return {check_id(H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.id()), "cannot open " + path),
          H5Fclose};
}

Handle create_dataset(const Handle& loc, const std::string& path, const std::vector<int64_t>& dims,
                      bool float64) {
  const Guard guard;
  Handle s = simple_space(dims);
  Handle lcpl = plist(H5P_LINK_CREATE);
  check(H5Pset_create_intermediate_group(lcpl.id(), 1), "link creation");
  Handle dcpl = untimed(H5P_DATASET_CREATE);
  return {check_id(H5Dcreate2(loc.id(), path.c_str(), float64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE,
                              s.id(), lcpl.id(), dcpl.id(), H5P_DEFAULT),
                   "create dataset " + path),
          H5Dclose};
}

namespace {

void write_rows_as(const Handle& dataset, int64_t first, int64_t n, hid_t mem_type,
                   const void* values) {
  Handle file_space = space(H5Dget_space(dataset.id()));
  if (n == 0) return;
  const int rank = H5Sget_simple_extent_ndims(file_space.id());
  std::vector<hsize_t> start(size_t(rank), 0), count(size_t(rank), 0);
  check(H5Sget_simple_extent_dims(file_space.id(), count.data(), nullptr), "dataspace dims");
  start[0] = hsize_t(first);
  count[0] = hsize_t(n);
  check(H5Sselect_hyperslab(file_space.id(), H5S_SELECT_SET, start.data(), nullptr, count.data(),
                            nullptr),
        "select rows");
  // A memory space of the selection's own shape (see read_rows_as).
  Handle mem_space = space(H5Screate_simple(rank, count.data(), nullptr));
  check(H5Dwrite(dataset.id(), mem_type, mem_space.id(), file_space.id(), H5P_DEFAULT, values),
        "write rows");
}

}  // namespace

void write_rows(const Handle& dataset, int64_t first, int64_t n, const float* values) {
  const Guard guard;
  write_rows_as(dataset, first, n, H5T_NATIVE_FLOAT, values);
}

void write_rows(const Handle& dataset, int64_t first, int64_t n, const double* values) {
  const Guard guard;
  write_rows_as(dataset, first, n, H5T_NATIVE_DOUBLE, values);
}

void remove_link(const Handle& loc, const std::string& path) {
  const Guard guard;
  check(H5Ldelete(loc.id(), path.c_str(), H5P_DEFAULT), "remove " + path);
}

void move_link(const Handle& loc, const std::string& from, const std::string& to) {
  const Guard guard;
  check(H5Lmove(loc.id(), from.c_str(), loc.id(), to.c_str(), H5P_DEFAULT, H5P_DEFAULT),
        "rename " + from + " to " + to);
}

Handle create_file(const std::string& path, int64_t userblock) {
  const Guard guard;
  quiet_once();
  // The root group without times, like every object we create.
  Handle fcpl = untimed(H5P_FILE_CREATE);
  if (userblock > 0) check(H5Pset_userblock(fcpl.id(), hsize_t(userblock)), "user block");
  Handle fapl = plist(H5P_FILE_ACCESS);
  checksummed_format(fapl);
  return {check_id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.id(), fapl.id()),
                   "cannot create " + path),
          H5Fclose};
}

Handle open_file_rw(const std::string& path) {
  const Guard guard;
  quiet_once();
  Handle fapl = plist(H5P_FILE_ACCESS);
  checksummed_format(fapl);
  return {check_id(H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.id()), "cannot open " + path),
          H5Fclose};
}

void flush(const Handle& file) {
  const Guard guard;
  check(H5Fflush(file.id(), H5F_SCOPE_GLOBAL), "flush");
}

void start_writeback(const Handle& file) {
#ifdef __linux__
  const Guard guard;
  Handle fapl(H5Fget_access_plist(file.id()), H5Pclose);
  void* handle = nullptr;  // the sec2 driver's is its file descriptor
  if (fapl.id() < 0 || H5Pget_driver(fapl.id()) != H5FD_SEC2 ||
      H5Fget_vfd_handle(file.id(), H5P_DEFAULT, &handle) < 0 || !handle) {
    H5Eclear2(H5E_DEFAULT);
    return;
  }
  ::sync_file_range(*static_cast<int*>(handle), 0, 0, SYNC_FILE_RANGE_WRITE);
#else
  (void)file;
#endif
}

bool exists(const Handle& loc, const std::string& path) {
  const Guard guard;
  std::string prefix = path.starts_with('/') ? "/" : "";
  size_t pos = prefix.size();
  while (pos < path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    if (next > pos) {
      prefix += path.substr(pos, next - pos);
      const htri_t r = H5Lexists(loc.id(), prefix.c_str(), H5P_DEFAULT);
      if (r < 0) clear_unless_damaged(path_below(loc, prefix));
      if (r <= 0) return false;
      prefix += '/';
    }
    pos = next + 1;
  }
  return true;
}

Handle open_group(const Handle& loc, const std::string& path) {
  const Guard guard;
  return {check_id(H5Gopen2(loc.id(), path.c_str(), H5P_DEFAULT), "open group " + path,
                   path_below(loc, path)),
          H5Gclose};
}

Handle create_group(const Handle& loc, const std::string& name) {
  const Guard guard;
  Handle gcpl = untimed(H5P_GROUP_CREATE);
  return {check_id(H5Gcreate2(loc.id(), name.c_str(), H5P_DEFAULT, gcpl.id(), H5P_DEFAULT),
                   "create group " + name),
          H5Gclose};
}

Handle open_dataset(const Handle& loc, const std::string& path) {
  const Guard guard;
  return {check_id(H5Dopen2(loc.id(), path.c_str(), H5P_DEFAULT), "open dataset " + path,
                   path_below(loc, path)),
          H5Dclose};
}

Handle open_dataset_to_stream(const Handle& loc, const std::string& path) {
  const Guard guard;
  Handle dapl = plist(H5P_DATASET_ACCESS);
  check(
      H5Pset_chunk_cache(dapl.id(), H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, H5D_CHUNK_CACHE_W0_DEFAULT),
      "dataset access");
  return {check_id(H5Dopen2(loc.id(), path.c_str(), dapl.id()), "open dataset " + path), H5Dclose};
}

bool is_dataset(const Handle& loc, const std::string& path) {
  const Guard guard;
  if (!exists(loc, path)) return false;
  // H5Iget_type on the opened object: the same call in HDF5 1.10, 1.12 and 1.14 (whose
  // H5Oget_info_by_name takes another argument list under the default API).
  const hid_t object = H5Oopen(loc.id(), path.c_str(), H5P_DEFAULT);
  if (object < 0) {
    clear_unless_damaged(path_below(loc, path));
    return false;
  }
  const bool dataset = H5Iget_type(object) == H5I_DATASET;
  H5Oclose(object);
  return dataset;
}

std::vector<int64_t> shape(const Handle& dataset) {
  const Guard guard;
  Handle s = space(H5Dget_space(dataset.id()));
  const int rank = H5Sget_simple_extent_ndims(s.id());
  if (rank < 0) fail("dataspace rank");
  std::vector<hsize_t> dims(size_t(rank), 0);
  if (rank > 0) check(H5Sget_simple_extent_dims(s.id(), dims.data(), nullptr), "dataspace dims");
  return {dims.begin(), dims.end()};
}

TypeClass type_class(const Handle& dataset) {
  const Guard guard;
  Handle t = type(H5Dget_type(dataset.id()));
  switch (H5Tget_class(t.id())) {
    case H5T_FLOAT: return TypeClass::floating;
    case H5T_INTEGER: return TypeClass::integer;
    default: return TypeClass::other;
  }
}

size_t value_size(const Handle& dataset) {
  const Guard guard;
  Handle t = type(H5Dget_type(dataset.id()));
  return H5Tget_size(t.id());
}

std::string type_name(const Handle& dataset) {
  const Guard guard;
  Handle t = type(H5Dget_type(dataset.id()));
  const std::string bits = std::to_string(8 * H5Tget_size(t.id())) + "-bit ";
  switch (H5Tget_class(t.id())) {
    case H5T_FLOAT: return bits + "float";
    case H5T_INTEGER:
      return bits + (H5Tget_sign(t.id()) == H5T_SGN_NONE ? "unsigned " : "") + "integer";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "variable-length";
    case H5T_OPAQUE: return "opaque";
    case H5T_REFERENCE: return "reference";
    default: return "unknown type";
  }
}

namespace {

// Rows [first, first + n) of a dataset of `rank` dimensions (1: elements; 2: rows of every
// column), converted to mem_type.
void read_rows_as(const Handle& dataset, int rank, int64_t first, int64_t n, hid_t mem_type,
                  void* out) {
  if (n == 0) return;
  Handle file_space = space(H5Dget_space(dataset.id()));
  hsize_t dims[2] = {0, 0};
  if (H5Sget_simple_extent_ndims(file_space.id()) != rank)
    fail(rank == 1 ? "not a 1-D dataset" : "not a 2-D dataset");
  check(H5Sget_simple_extent_dims(file_space.id(), dims, nullptr), "dataspace dims");
  const hsize_t start[2] = {hsize_t(first), 0}, count[2] = {hsize_t(n), dims[1]};
  check(H5Sselect_hyperslab(file_space.id(), H5S_SELECT_SET, start, nullptr, count, nullptr),
        "select rows");
  // A memory space of the selection's own shape: with a flat one HDF5 maps the chunks of a
  // compressed dataset element run by element run, 5 times slower (measured on gzip chunks of
  // 938 x 25 values).
  Handle mem_space = rank == 1 ? simple_space({n}) : simple_space({n, int64_t(dims[1])});
  check(H5Dread(dataset.id(), mem_type, mem_space.id(), file_space.id(), H5P_DEFAULT, out),
        "read rows");
}

}  // namespace

void read_rows(const Handle& dataset, int64_t first, int64_t n, float* out) {
  const Guard guard;
  read_rows_as(dataset, 2, first, n, H5T_NATIVE_FLOAT, out);
}

void read_rows(const Handle& dataset, int64_t first, int64_t n, double* out) {
  const Guard guard;
  read_rows_as(dataset, 2, first, n, H5T_NATIVE_DOUBLE, out);
}

void read_range(const Handle& dataset, int64_t first, int64_t n, int64_t* out) {
  const Guard guard;
  read_rows_as(dataset, 1, first, n, H5T_NATIVE_INT64, out);
}

void read_range(const Handle& dataset, int64_t first, int64_t n, double* out) {
  const Guard guard;
  read_rows_as(dataset, 1, first, n, H5T_NATIVE_DOUBLE, out);
}

bool is_boolean(const Handle& dataset) {
  const Guard guard;
  Handle t = type(H5Dget_type(dataset.id()));
  if (H5Tget_class(t.id()) != H5T_ENUM || H5Tget_nmembers(t.id()) != 2) return false;
  for (unsigned i = 0; i < 2; ++i) {
    char* member = H5Tget_member_name(t.id(), i);
    if (member == nullptr) return false;
    const std::string text = member;
    H5free_memory(member);
    if (text != (i == 0 ? "FALSE" : "TRUE")) return false;
  }
  return true;
}

std::vector<std::string> read_strings(const Handle& loc, const std::string& path) {
  const Guard guard;
  Handle d = open_dataset(loc, path);
  Handle t = type(H5Dget_type(d.id()));
  if (H5Tget_class(t.id()) != H5T_STRING) throw Failure(path_below(loc, path) + " is not strings");
  const std::vector<int64_t> dims = shape(d);
  if (dims.size() != 1) throw Failure(path_below(loc, path) + " is not a 1-D dataset");
  const size_t n = size_t(dims[0]);
  std::vector<std::string> out(n);
  if (n == 0) return out;
  if (H5Tis_variable_str(t.id()) > 0) {
    Handle mem = string_type();
    std::vector<char*> text(n, nullptr);
    check(H5Dread(d.id(), mem.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data()), "read strings",
          path_below(loc, path));
    for (size_t i = 0; i < n; ++i) {
      out[i] = text[i] ? text[i] : "";
      H5free_memory(text[i]);
    }
    return out;
  }
  // Padded with NULs, not terminated by one: every byte of a full-width string is kept.
  const size_t width = H5Tget_size(t.id());
  Handle mem = type(H5Tcopy(H5T_C_S1));
  check(H5Tset_size(mem.id(), width), "string type");
  check(H5Tset_strpad(mem.id(), H5T_STR_NULLPAD), "string type");
  std::string all(n * width, '\0');
  check(H5Dread(d.id(), mem.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, all.data()), "read strings",
        path_below(loc, path));
  for (size_t i = 0; i < n; ++i) {
    const char* s = all.data() + i * width;
    out[i].assign(s, strnlen(s, width));
  }
  return out;
}

void write_strings(const Handle& loc, const std::string& path,
                   const std::vector<std::string>& values) {
  const Guard guard;
  Handle t = string_type();
  Handle s = simple_space({int64_t(values.size())});
  Handle dcpl = untimed(H5P_DATASET_CREATE);
  Handle d(check_id(H5Dcreate2(loc.id(), path.c_str(), t.id(), s.id(), H5P_DEFAULT, dcpl.id(),
                               H5P_DEFAULT),
                    "create dataset " + path),
           H5Dclose);
  std::vector<const char*> text(values.size());
  for (size_t i = 0; i < values.size(); ++i) text[i] = values[i].c_str();
  if (!values.empty())
    check(H5Dwrite(d.id(), t.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data()),
          "write dataset " + path);
}

void copy_object(const Handle& src, const std::string& from, const Handle& dst,
                 const std::string& to) {
  const Guard guard;
  check(H5Ocopy(src.id(), from.c_str(), dst.id(), to.c_str(), H5P_DEFAULT, H5P_DEFAULT),
        "copy " + from);
}

int64_t chunk_rows(const Handle& dataset) {
  const Guard guard;
  Handle dcpl(check_id(H5Dget_create_plist(dataset.id()), "creation properties"), H5Pclose);
  if (H5Pget_layout(dcpl.id()) != H5D_CHUNKED) return 0;
  hsize_t dims[2] = {0, 0};
  if (H5Pget_chunk(dcpl.id(), 2, dims) != 2) return 0;
  return int64_t(dims[0]);
}

bool chunk_addresses_skip_user_block() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return std::tuple(major, minor, release) < std::tuple(1u, 14u, 4u);
}

std::string library_version() {
  const Guard guard;
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

namespace {

// The sources table's record: fixed-length strings, because parallel HDF5 cannot write
// variable-length data.
Handle sources_type(size_t file_chars, size_t dataset_chars) {
  Handle file = type(H5Tcopy(H5T_C_S1)), dataset = type(H5Tcopy(H5T_C_S1));
  check(H5Tset_size(file.id(), std::max<size_t>(1, file_chars)), "string type");
  check(H5Tset_size(dataset.id(), std::max<size_t>(1, dataset_chars)), "string type");
  const size_t size = H5Tget_size(file.id()) + H5Tget_size(dataset.id()) + 2 * sizeof(int64_t);
  Handle t = type(H5Tcreate(H5T_COMPOUND, size));
  size_t at = 0;
  check(H5Tinsert(t.id(), "file", at, file.id()), "table type");
  at += H5Tget_size(file.id());
  check(H5Tinsert(t.id(), "dataset", at, dataset.id()), "table type");
  at += H5Tget_size(dataset.id());
  check(H5Tinsert(t.id(), "first_row", at, H5T_NATIVE_INT64), "table type");
  check(H5Tinsert(t.id(), "rows", at + sizeof(int64_t), H5T_NATIVE_INT64), "table type");
  return t;
}

}  // namespace

void write_sources(const Handle& loc, const std::string& name,
                   const std::vector<SourceEntry>& sources, Storage storage, bool write_values) {
  const Guard guard;
  size_t file_chars = 1, dataset_chars = 1;
  for (const SourceEntry& e : sources) {
    file_chars = std::max(file_chars, e.file.size());
    dataset_chars = std::max(dataset_chars, e.dataset.size());
  }
  Handle t = sources_type(file_chars, dataset_chars);
  const size_t record = H5Tget_size(t.id());
  std::vector<char> bytes(record * sources.size(), '\0');
  for (size_t i = 0; i < sources.size(); ++i) {
    char* r = bytes.data() + i * record;
    std::memcpy(r, sources[i].file.data(), sources[i].file.size());
    std::memcpy(r + file_chars, sources[i].dataset.data(), sources[i].dataset.size());
    std::memcpy(r + file_chars + dataset_chars, &sources[i].first_row, sizeof(int64_t));
    std::memcpy(r + file_chars + dataset_chars + sizeof(int64_t), &sources[i].rows,
                sizeof(int64_t));
  }
  const std::vector<int64_t> dims = {int64_t(sources.size())};
  Handle s = simple_space(dims);
  Handle dcpl = creation(storage, dims, record);
  Handle d(check_id(H5Dcreate2(loc.id(), name.c_str(), t.id(), s.id(), H5P_DEFAULT, dcpl.id(),
                               H5P_DEFAULT),
                    "create dataset " + name),
           H5Dclose);
  if (write_values && !sources.empty())
    check(H5Dwrite(d.id(), t.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()),
          "write dataset " + name);
}

std::vector<SourceEntry> read_sources(const Handle& loc, const std::string& name) {
  const Guard guard;
  const std::string object = path_below(loc, name);
  Handle d = open_dataset(loc, name);
  Handle stored = type(H5Dget_type(d.id()));
  if (H5Tget_class(stored.id()) != H5T_COMPOUND || H5Tget_nmembers(stored.id()) != 4)
    throw Failure(name + " is not a sources table");
  const auto chars = [&](const char* member) {
    const int i = H5Tget_member_index(stored.id(), member);
    if (i < 0) throw Failure(name + " has no member " + member);
    Handle m = type(H5Tget_member_type(stored.id(), unsigned(i)));
    return H5Tget_size(m.id());
  };
  const size_t file_chars = chars("file"), dataset_chars = chars("dataset");
  Handle t = sources_type(file_chars, dataset_chars);
  const std::vector<int64_t> n = shape(d);
  if (n.size() != 1) throw Failure(name + " is not a 1-D table");
  const size_t record = H5Tget_size(t.id());
  std::vector<char> bytes(record * size_t(n[0]));
  check_chunks(d, object);
  if (n[0] > 0)
    check(H5Dread(d.id(), t.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()),
          "read dataset " + name, object);
  std::vector<SourceEntry> out(static_cast<size_t>(n[0]));
  for (size_t i = 0; i < out.size(); ++i) {
    const char* r = bytes.data() + i * record;
    out[i].file.assign(r, strnlen(r, file_chars));
    out[i].dataset.assign(r + file_chars, strnlen(r + file_chars, dataset_chars));
    std::memcpy(&out[i].first_row, r + file_chars + dataset_chars, sizeof(int64_t));
    std::memcpy(&out[i].rows, r + file_chars + dataset_chars + sizeof(int64_t), sizeof(int64_t));
  }
  return out;
}

namespace {

void write_typed(const Handle& loc, const std::string& name, const std::vector<int64_t>& dims,
                 hid_t file_type, hid_t mem_type, const void* data) {
  Handle s = simple_space(dims);
  const size_t value_size = H5Tget_size(file_type);
  Handle dcpl = creation(Storage::checksummed, dims, value_size);
  Handle d(check_id(H5Dcreate2(loc.id(), name.c_str(), file_type, s.id(), H5P_DEFAULT, dcpl.id(),
                               H5P_DEFAULT),
                    "create dataset " + name),
           H5Dclose);
  // Values in memory as in the file (x86: little-endian): each chunk as HDF5's Fletcher-32
  // filter would store it, written as it is, through one buffer that stays in the cache.
  // HDF5's filter sums byte by byte at 0.7 GB/s, the most of a checkpoint's write;
  // fletcher32() gives the same sums 20 times faster. Any other dataset goes through HDF5's
  // filter.
  const int64_t rows = checksummed_chunk_rows(dims, value_size);
  if (rows > 0 && H5Tequal(file_type, mem_type) > 0) {
    const size_t row_bytes = value_size * size_t(std::accumulate(dims.begin() + 1, dims.end(),
                                                                 int64_t(1), std::multiplies<>()));
    thread_local std::vector<unsigned char> chunk;  // kept: no page faults per chunk
    std::vector<hsize_t> origin(dims.size(), 0);
    for (int64_t first = 0; first < dims[0]; first += rows) {
      // A last partial chunk is stored whole, its tail beyond the dataset zeros.
      const size_t bytes = size_t(std::min(rows, dims[0] - first)) * row_bytes;
      const size_t whole = size_t(rows) * row_bytes;
      if (chunk.size() < whole + 4) chunk.resize(whole + 4);
      std::memcpy(chunk.data(), static_cast<const unsigned char*>(data) + size_t(first) * row_bytes,
                  bytes);
      std::memset(chunk.data() + bytes, 0, whole - bytes);
      const uint32_t sum = fletcher32(chunk.data(), whole);
      for (size_t i = 0; i < 4; ++i) chunk[whole + i] = static_cast<unsigned char>(sum >> (8 * i));
      origin[0] = hsize_t(first);
      check(H5Dwrite_chunk(d.id(), H5P_DEFAULT, 0, origin.data(), whole + 4, chunk.data()),
            "write dataset " + name);
    }
    return;
  }
  check(H5Dwrite(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "write dataset " + name);
}

template <class T>
std::vector<T> read_typed(const Handle& loc, const std::string& path,
                          const std::vector<int64_t>& dims, hid_t mem_type) {
  if (!is_dataset(loc, path)) throw Failure("dataset " + path + " is missing");
  const std::string object = path_below(loc, path);
  Handle d = open_dataset(loc, path);
  const TypeClass wanted = std::is_floating_point_v<T> ? TypeClass::floating : TypeClass::integer;
  if (shape(d) != dims || type_class(d) != wanted)
    throw Failure("dataset " + path + " has the wrong shape or type");
  const int64_t n = std::accumulate(dims.begin(), dims.end(), int64_t(1), std::multiplies<>());
  std::vector<T> out(static_cast<size_t>(n));
  check_chunks(d, object);
  check(H5Dread(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()),
        "read dataset " + path, object);
  return out;
}

}  // namespace

void write_dataset(const Handle& loc, const std::string& name, const std::vector<int64_t>& dims,
                   const float* data) {
  const Guard guard;
  write_typed(loc, name, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data);
}

void write_dataset(const Handle& loc, const std::string& name, const std::vector<int64_t>& dims,
                   const double* data) {
  const Guard guard;
  write_typed(loc, name, dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, data);
}

uint32_t fletcher32(const unsigned char* data, size_t bytes) {
  // HDF5's sums over big-endian 16-bit words (a last odd byte is the high byte of a word):
  // sum1 of the words, sum2 of the running sum1s, each folded into 16 bits as a ones'
  // complement sum: a nonzero multiple of 65535 is 0xFFFF, and only all zeros give 0. Here in
  // blocks of 360 words with 32-bit sums (a word's weight in sum2 is the number of words from
  // it to the block's end), which the compiler vectorizes.
  const size_t words = bytes / 2;
  uint64_t sum1 = 0, sum2 = 0;
  bool nonzero = false;
  for (size_t at = 0; at < words;) {
    const size_t n = std::min<size_t>(words - at, 360);
    const unsigned char* p = data + 2 * at;
    uint32_t block = 0, weighted = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t word = uint32_t(p[2 * i]) << 8 | p[2 * i + 1];
      block += word;
      weighted += uint32_t(n - i) * word;
    }
    sum2 = (sum2 + sum1 * n + weighted) % 65535;
    sum1 = (sum1 + block) % 65535;
    nonzero |= block != 0;
    at += n;
  }
  if (bytes % 2) {
    const uint32_t word = uint32_t(data[bytes - 1]) << 8;
    sum1 = (sum1 + word) % 65535;
    sum2 = (sum2 + sum1) % 65535;
    nonzero |= word != 0;
  }
  const auto fold = [&](uint64_t sum) {
    return !nonzero ? 0u : sum == 0 ? 0xFFFFu : uint32_t(sum);
  };
  return fold(sum2) << 16 | fold(sum1);
}

int64_t checksummed_chunk_rows(const std::vector<int64_t>& dims, size_t value_size) {
  if (dims.empty()) return 0;
  uint64_t row_bytes = value_size;
  for (size_t i = 1; i < dims.size(); ++i) row_bytes *= uint64_t(dims[i]);
  if (dims[0] == 0 || row_bytes == 0) return 0;
  // The fewest chunks of at most about kChunkBytes, with rows spread evenly over them (a last
  // chunk is stored whole: its rows past the data would be bytes for nothing).
  const uint64_t rows = uint64_t(dims[0]);
  const uint64_t chunks = std::min(rows, (rows * row_bytes + kChunkBytes - 1) / kChunkBytes);
  return int64_t((rows + chunks - 1) / chunks);
}

void write_dataset(const Handle& loc, const std::string& name, const std::vector<int64_t>& dims,
                   const int64_t* data) {
  const Guard guard;
  write_typed(loc, name, dims, H5T_STD_I64LE, H5T_NATIVE_INT64, data);
}

std::vector<int64_t> read_dataset_i64(const Handle& loc, const std::string& path,
                                      const std::vector<int64_t>& dims) {
  const Guard guard;
  return read_typed<int64_t>(loc, path, dims, H5T_NATIVE_INT64);
}

std::vector<float> read_dataset(const Handle& loc, const std::string& path,
                                const std::vector<int64_t>& dims) {
  const Guard guard;
  return read_typed<float>(loc, path, dims, H5T_NATIVE_FLOAT);
}

std::vector<double> read_dataset_f64(const Handle& loc, const std::string& path,
                                     const std::vector<int64_t>& dims) {
  const Guard guard;
  return read_typed<double>(loc, path, dims, H5T_NATIVE_DOUBLE);
}

void write_attribute(const Handle& obj, const std::string& name, const std::string& value) {
  const Guard guard;
  Handle t = string_type();
  Handle s = space(H5Screate(H5S_SCALAR));
  const char* text = value.c_str();
  write_attr(obj, name, t.id(), t.id(), s, &text);
}

void write_attribute(const Handle& obj, const std::string& name, int64_t value) {
  const Guard guard;
  write_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, space(H5Screate(H5S_SCALAR)), &value);
}

void write_attribute(const Handle& obj, const std::string& name, double value) {
  const Guard guard;
  write_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, space(H5Screate(H5S_SCALAR)), &value);
}

void write_attribute(const Handle& obj, const std::string& name,
                     const std::vector<int64_t>& value) {
  const Guard guard;
  write_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, simple_space({int64_t(value.size())}),
             value.data());
}

void write_attribute(const Handle& obj, const std::string& name,
                     const std::vector<std::string>& value) {
  const Guard guard;
  Handle t = string_type();
  std::vector<const char*> text(std::max<size_t>(1, value.size()), "");  // HDF5 wants a buffer
  for (size_t i = 0; i < value.size(); ++i) text[i] = value[i].c_str();
  write_attr(obj, name, t.id(), t.id(), simple_space({int64_t(value.size())}), text.data());
}

bool has_attribute(const Handle& obj, const std::string& name) {
  const Guard guard;
  const htri_t r = H5Aexists(obj.id(), name.c_str());
  if (r < 0) clear_unless_damaged(attribute_name(obj.id(), name));
  return r > 0;
}

std::string read_string_attribute(const Handle& obj, const std::string& name) {
  const Guard guard;
  Handle a = open_attr(obj, name);
  Handle t = type(H5Aget_type(a.id()));
  if (H5Tget_class(t.id()) != H5T_STRING || element_count(a) != 1)
    throw Failure("attribute '" + name + "' is not a string");
  if (H5Tis_variable_str(t.id()) > 0) {
    Handle mem = string_type();
    char* text = nullptr;
    check(H5Aread(a.id(), mem.id(), &text), "read attribute " + name,
          attribute_name(obj.id(), name));
    std::string value = text ? text : "";
    H5free_memory(text);
    return value;
  }
  std::string value(H5Tget_size(t.id()), '\0');
  Handle mem = type(H5Tcopy(H5T_C_S1));
  check(H5Tset_size(mem.id(), value.size()), "string type");
  check(H5Aread(a.id(), mem.id(), value.data()), "read attribute " + name,
        attribute_name(obj.id(), name));
  value.resize(value.find('\0') == std::string::npos ? value.size() : value.find('\0'));
  return value;
}

int64_t read_int_attribute(const Handle& obj, const std::string& name) {
  const Guard guard;
  Handle a = open_attr(obj, name);
  Handle t = type(H5Aget_type(a.id()));
  if (H5Tget_class(t.id()) != H5T_INTEGER || element_count(a) != 1)
    throw Failure("attribute '" + name + "' is not an integer");
  int64_t value = 0;
  check(H5Aread(a.id(), H5T_NATIVE_INT64, &value), "read attribute " + name,
        attribute_name(obj.id(), name));
  return value;
}

double read_double_attribute(const Handle& obj, const std::string& name) {
  const Guard guard;
  Handle a = open_attr(obj, name);
  Handle t = type(H5Aget_type(a.id()));
  const H5T_class_t c = H5Tget_class(t.id());
  if ((c != H5T_FLOAT && c != H5T_INTEGER) || element_count(a) != 1)
    throw Failure("attribute '" + name + "' is not a number");
  double value = 0;
  check(H5Aread(a.id(), H5T_NATIVE_DOUBLE, &value), "read attribute " + name,
        attribute_name(obj.id(), name));
  return value;
}

std::vector<int64_t> read_int_array_attribute(const Handle& obj, const std::string& name) {
  const Guard guard;
  Handle a = open_attr(obj, name);
  Handle t = type(H5Aget_type(a.id()));
  if (H5Tget_class(t.id()) != H5T_INTEGER)
    throw Failure("attribute '" + name + "' is not an integer array");
  std::vector<int64_t> value(size_t(element_count(a)));
  check(H5Aread(a.id(), H5T_NATIVE_INT64, value.data()), "read attribute " + name,
        attribute_name(obj.id(), name));
  return value;
}

// ---- The files a dataset reaches into ----------------------------------------------------------
// The rules below follow HDF5 1.10.8 and 1.14 line by line: H5F_prefix_open_file (links and
// virtual sources), H5D__build_file_prefix and H5_combine_path (raw files), H5_build_extpath
// and H5F__build_actual_name (the directories they search).

namespace {

// H5_build_extpath: the directory of a file as it was opened, with its trailing '/'; a relative
// name is taken from the current directory (read into 1024 bytes, as the library does; empty
// when that fails, and the library then skips the directory).
std::string extpath(const std::string& name) {
  std::string full = name;
  if (!name.starts_with('/')) {
    char cwd[1024];
    if (!getcwd(cwd, sizeof cwd)) return "";
    full = cwd;
    if (!full.ends_with('/')) full += '/';
    full += name;
  }
  return full.substr(0, full.rfind('/') + 1);
}

// H5F__build_actual_name: the resolved path when the name itself is a symbolic link, else the
// name as opened.
std::string actual_name(const std::string& name) {
  struct stat st {};
  if (lstat(name.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    char real[PATH_MAX];
    if (realpath(name.c_str(), real)) return real;
  }
  return name;
}

// H5F__build_name: the prefix, a '/' unless it is empty or ends with one, the name.
std::string build_name(const std::string& prefix, const std::string& name) {
  return prefix + (prefix.empty() || prefix.ends_with('/') ? "" : "/") + name;
}

// H5D__build_file_prefix: the variable when set and not empty (else the access property list's
// prefix, which aetrain never sets); none for "" or "."; "${ORIGIN}" at its start stands for the
// directory of the dataset's file.
std::optional<std::string> file_prefix(const char* variable, const std::string& holder) {
  const char* value = std::getenv(variable);
  if (!value || !*value || std::strcmp(value, ".") == 0) return std::nullopt;
  std::string prefix = value;
  const std::string origin = "${ORIGIN}";
  if (prefix.starts_with(origin)) prefix = extpath(holder) + prefix.substr(origin.size());
  return prefix;
}

// A name of a virtual mapping with a printf-style block number ("%b"); "%%" is a '%'.
bool has_block_number(const std::string& name) {
  for (size_t i = 0; i + 1 < name.size(); ++i)
    if (name[i] == '%') {
      if (name[i + 1] == 'b') return true;
      ++i;
    }
  return false;
}

std::string unescape_percent(const std::string& name) {
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    out += name[i];
    if (name[i] == '%' && i + 1 < name.size() && name[i + 1] == '%') ++i;
  }
  return out;
}

// The sec2 driver's test of a candidate: open(2) for reading.
bool opens(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

// A selection that reaches to an unlimited extent (a regular hyperslab with an unlimited count
// or block).
bool unlimited(const Handle& s) {
  if (H5Sis_regular_hyperslab(s.id()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  const int rank = H5Sget_simple_extent_ndims(s.id());
  const size_t n = size_t(std::max(rank, 0));
  std::vector<hsize_t> start(n), stride(n), count(n), block(n);
  check(H5Sget_regular_hyperslab(s.id(), start.data(), stride.data(), count.data(), block.data()),
        "mapping selection");
  for (int i = 0; i < rank; ++i)
    if (count[size_t(i)] == H5S_UNLIMITED || block[size_t(i)] == H5S_UNLIMITED) return true;
  return false;
}

void bounds(const Handle& s, std::vector<int64_t>& first, std::vector<int64_t>& last) {
  const int rank = H5Sget_simple_extent_ndims(s.id());
  if (rank < 0) fail("mapping selection");
  const size_t n = size_t(rank);
  std::vector<hsize_t> a(n), b(n);
  if (rank > 0 && H5Sget_select_npoints(s.id()) > 0)
    check(H5Sget_select_bounds(s.id(), a.data(), b.data()), "mapping selection bounds");
  first.assign(a.begin(), a.end());
  last.assign(b.begin(), b.end());
}

std::string text(ssize_t (*get)(hid_t, size_t, char*, size_t), hid_t plist, size_t i,
                 const char* what) {
  const ssize_t n = get(plist, i, nullptr, 0);
  if (n < 0) fail(what);
  std::string out(size_t(n) + 1, '\0');
  if (get(plist, i, out.data(), out.size()) < 0) fail(what);
  out.resize(size_t(n));
  return out;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (at <= path.size()) {
    size_t end = path.find('/', at);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(at, end - at);
    if (!part.empty() && part != ".") parts.push_back(part);
    at = end + 1;
  }
  return parts;
}

using Status = Dependency::Status;

// Follows paths and datasets as the library would, recording what they depend on.
class Walker {
 public:
  explicit Walker(int max_depth) : max_depth_(max_depth) {}

  // An object, and the file (as opened) that holds it.
  struct Place {
    Handle object;
    std::string file;
  };

  // Follows `path` from `start` (an object of the file `file`): an absolute path from that
  // file's root, a relative one from `start` (whose own path is `base`). Nothing when the path
  // leads nowhere: then a failed dependency says why, or else `missing` names the part of the
  // path that does not exist.
  std::optional<Place> follow(hid_t start, std::string file, const std::string& path,
                              const std::string& base, int parent, int depth,
                              std::string& missing) {
    const bool absolute = path.starts_with('/');
    Handle cur(check_id(H5Oopen(start, absolute ? "/" : ".", H5P_DEFAULT), "open " + base),
               H5Oclose);
    std::string here = absolute ? "" : base;
    const std::vector<std::string> parts = split_path(path);
    for (size_t i = 0; i < parts.size(); ++i) {
      const std::string& part = parts[i];
      const std::string at = here + "/" + part;
      const htri_t exists = H5Lexists(cur.id(), part.c_str(), H5P_DEFAULT);
      if (exists <= 0) {
        H5Eclear2(H5E_DEFAULT);
        missing = at;
        return std::nullopt;
      }
      H5L_info_t info;
      check(H5Lget_info(cur.id(), part.c_str(), &info, H5P_DEFAULT), "link " + at);
      Handle next;
      if (info.type == H5L_TYPE_HARD) {
        next =
            Handle(check_id(H5Oopen(cur.id(), part.c_str(), H5P_DEFAULT), "open " + at), H5Oclose);
      } else if (info.type == H5L_TYPE_SOFT || info.type == H5L_TYPE_EXTERNAL) {
        std::string value(info.u.val_size, '\0');
        check(H5Lget_val(cur.id(), part.c_str(), value.data(), value.size(), H5P_DEFAULT),
              "link " + at);
        if (info.type == H5L_TYPE_SOFT && depth >= max_depth_) {
          missing = at;  // a cycle of soft links (open_target reports deep external ones)
          return std::nullopt;
        }
        std::optional<Place> p;
        if (info.type == H5L_TYPE_SOFT) {
          p = follow(cur.id(), file, value.c_str(), here, parent, depth + 1, missing);
        } else {
          unsigned flags = 0;
          const char *name = nullptr, *object = nullptr;
          check(H5Lunpack_elink_val(value.data(), value.size(), &flags, &name, &object),
                "external link " + at);
          Dependency d;
          d.kind = DependencyKind::external_link;
          d.parent = parent;
          d.holder = file;
          d.object = at;
          d.name = name;
          d.target = object;
          int index = -1;
          p = open_target(std::move(d), depth, index);
        }
        if (!p) return std::nullopt;
        next = std::move(p->object);
        file = p->file;
      } else {
        missing = at;  // a user-defined link: the library needs its class to follow it
        return std::nullopt;
      }
      if (i + 1 < parts.size() && H5Iget_type(next.id()) != H5I_GROUP) {
        missing = at + "/" + parts[i + 1];
        return std::nullopt;
      }
      cur = std::move(next);
      here = at;
    }
    return Place{std::move(cur), file};
  }

  // Records the mappings of a virtual dataset and the files of external raw storage, and
  // follows each source.
  void dataset(const Place& d, const std::string& path, int parent, int depth) {
    if (H5Iget_type(d.object.id()) != H5I_DATASET) return;
    Handle dcpl(check_id(H5Dget_create_plist(d.object.id()), "creation properties of " + path),
                H5Pclose);
    const std::vector<int64_t> dims = shape(d.object);
    if (H5Pget_layout(dcpl.id()) == H5D_VIRTUAL) {
      size_t n = 0;
      check(H5Pget_virtual_count(dcpl.id(), &n), "mappings of " + path);
      for (size_t i = 0; i < n; ++i) {
        Dependency s;
        s.kind = DependencyKind::virtual_source;
        s.parent = parent;
        s.holder = d.file;
        s.object = path;
        s.name = text(H5Pget_virtual_filename, dcpl.id(), i, "mapping file name");
        s.target = text(H5Pget_virtual_dsetname, dcpl.id(), i, "mapping dataset name");
        s.virtual_dims = dims;
        const Handle vspace = space(H5Pget_virtual_vspace(dcpl.id(), i));
        const Handle sspace = space(H5Pget_virtual_srcspace(dcpl.id(), i));
        if (unlimited(vspace) || unlimited(sspace) || has_block_number(s.name) ||
            has_block_number(s.target)) {
          s.status = Status::unlimited;
          deps.push_back(std::move(s));
          continue;
        }
        bounds(vspace, s.mapped_first, s.mapped_last);
        s.mapped_values = H5Sget_select_npoints(vspace.id());
        // A whole source is stored as "all" with no extent: it is the source's own when read.
        s.selects_all = H5Sget_select_type(sspace.id()) == H5S_SEL_ALL;
        if (!s.selects_all) bounds(sspace, s.selected_first, s.selected_last);
        s.name = unescape_percent(s.name);
        s.target = unescape_percent(s.target);
        const std::string target = s.target;
        int index = -1;
        const std::optional<Place> source = open_target(std::move(s), depth, index);
        if (!source) continue;
        Dependency& found = deps[size_t(index)];
        if (H5Iget_type(source->object.id()) != H5I_DATASET) {
          found.status = Status::not_dataset;
          continue;
        }
        found.source_dims = shape(source->object);
        found.source_type = type_class(source->object);
        found.source_type_name = type_name(source->object);
        dataset(*source, target, index, depth + 1);
      }
      return;
    }
    const int n = H5Pget_external_count(dcpl.id());
    if (n <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return;
    }
    // The values fill the files' extents in order; only the extents that hold some are read.
    int64_t left = int64_t(value_size(d.object)) *
                   std::accumulate(dims.begin(), dims.end(), int64_t(1), std::multiplies<>());
    for (int i = 0; i < n && left > 0; ++i) {
      char name[PATH_MAX + 1] = {};
      off_t offset = 0;
      hsize_t size = 0;
      check(H5Pget_external(dcpl.id(), unsigned(i), sizeof name - 1, name, &offset, &size),
            "external storage of " + path);
      Dependency f;
      f.kind = DependencyKind::external_file;
      f.parent = parent;
      f.holder = d.file;
      f.object = path;
      f.name = name;
      f.offset = offset;
      f.bytes = size == H5F_UNLIMITED ? left : std::min(left, int64_t(size));
      left -= f.bytes;
      look_up(f);
      struct stat st {};
      if (f.status == Status::ok && ::stat(f.path.c_str(), &st) == 0) f.file_bytes = st.st_size;
      deps.push_back(std::move(f));
    }
  }

  std::vector<Dependency> deps;

 private:
  // Records `d` (an external link or a virtual source) as deps[index], finds its file and opens
  // its target there. Nothing when that fails (the dependency, or one found through it, says
  // why).
  std::optional<Place> open_target(Dependency d, int depth, int& index) {
    index = int(deps.size());
    deps.push_back(std::move(d));
    Dependency& dep = deps.back();
    if (depth >= max_depth_) {
      dep.status = Status::too_deep;
      return std::nullopt;
    }
    if (dep.kind == DependencyKind::virtual_source && dep.name == ".")
      dep.path = dep.holder;
    else
      look_up(dep);
    if (dep.status != Status::ok) return std::nullopt;
    const std::string path = dep.path, target = dep.target;
    const size_t before = deps.size();
    std::string lost;
    std::optional<Place> p;
    try {
      // The file stays open while an object of it is (HDF5's weak close), and no longer: a
      // virtual dataset over thousands of files does not hold them all open.
      const Handle f = open_file(path);
      p = follow(f.id(), path, target.starts_with('/') ? target : "/" + target, "", index,
                 depth + 1, lost);
    } catch (const Failure& e) {
      deps[size_t(index)].status = Status::failed;
      deps[size_t(index)].error = e.what();
      return std::nullopt;
    }
    if (!p) {
      const bool deeper_failed =
          std::any_of(deps.begin() + std::ptrdiff_t(before), deps.end(),
                      [](const Dependency& x) { return x.status != Status::ok; });
      if (!deeper_failed) {
        deps[size_t(index)].status = Status::no_object;
        deps[size_t(index)].missing = lost;
      }
    }
    return p;
  }

  void look_up(Dependency& d) {
    for (const std::string& c : candidates(d.kind, d.holder, d.name)) {
      if (std::find(d.tried.begin(), d.tried.end(), c) != d.tried.end()) continue;
      d.tried.push_back(c);
      if (!opens(c)) continue;
      d.path = c;
      if (d.kind != DependencyKind::external_file && !is_hdf5(c)) d.status = Status::not_hdf5;
      return;
    }
    d.status = Status::no_file;
  }

  int max_depth_;
};

}  // namespace

std::vector<std::string> candidates(DependencyKind kind, const std::string& holder,
                                    const std::string& name) {
  if (kind == DependencyKind::external_file) {  // H5D__efl_read: one place, no search
    const std::optional<std::string> prefix = file_prefix("HDF5_EXTFILE_PREFIX", holder);
    return {!prefix || name.starts_with('/') ? name : build_name(*prefix, name)};
  }
  const bool vds = kind == DependencyKind::virtual_source;
  std::vector<std::string> out;
  // An absolute name as it is; then its last component is looked for like a relative name.
  std::string file = name;
  if (name.starts_with('/')) {
    out.push_back(name);
    file = name.substr(name.rfind('/') + 1);
  }
  // Each directory of the variable's ':'-separated list.
  if (const char* list = std::getenv(vds ? "HDF5_VDS_PREFIX" : "HDF5_EXT_PREFIX")) {
    const std::string dirs = list;
    for (size_t at = 0; at < dirs.size();) {
      size_t end = dirs.find(':', at);
      if (end == std::string::npos) end = dirs.size();
      if (end > at) out.push_back(build_name(dirs.substr(at, end - at), file));
      at = end + 1;
    }
  }
  // The access property list's prefix: for virtual sources HDF5_VDS_PREFIX again, whole, with
  // ${ORIGIN} expanded (H5D__build_file_prefix); for links only H5Pset_elink_prefix's.
  if (vds)
    if (const std::optional<std::string> prefix = file_prefix("HDF5_VDS_PREFIX", holder))
      out.push_back(build_name(*prefix, file));
  // The directory of the file that names it, as opened.
  if (const std::string dir = extpath(holder); !dir.empty()) out.push_back(build_name(dir, file));
  // The name itself, from the current directory.
  out.push_back(file);
  // The directory of that file with a symbolic link in its name resolved.
  const std::string actual = actual_name(holder);
  if (const size_t slash = actual.rfind('/'); slash != std::string::npos)
    out.push_back(build_name(actual.substr(0, slash), file));
  return out;
}

std::vector<Dependency> dependencies(const std::string& file, const std::string& path,
                                     int max_depth) {
  const Guard guard;
  quiet_once();
  Walker walker(max_depth);
  std::string missing;
  const Handle f = open_file(file);
  const std::optional<Walker::Place> place = walker.follow(f.id(), file, path, "", -1, 0, missing);
  if (place) walker.dataset(*place, path, -1, 0);
  return std::move(walker.deps);
}

namespace {

// The walk of find_damage: the first object that fails, and the path of the object at hand.
struct DamageWalk {
  std::string path;
  std::exception_ptr error;  // what a callback threw, rethrown once HDF5's iteration returns
};

// Reads a dataset's every chunk (or its contiguous bytes) as stored, through the checks
// read_dataset makes.
void read_all(hid_t dataset, const std::string& object) {
  Handle d(check_id(H5Dopen2(dataset, ".", H5P_DEFAULT), "open dataset", object), H5Dclose);
  check_chunks(d, object);
  Handle t = type(H5Dget_type(d.id()));
  if (H5Tdetect_class(t.id(), H5T_VLEN) > 0 || H5Tis_variable_str(t.id()) > 0) return;
  Handle s = space(H5Dget_space(d.id()));
  const hssize_t n = H5Sget_simple_extent_npoints(s.id());
  if (n <= 0) return;
  std::vector<char> bytes(size_t(n) * H5Tget_size(t.id()));
  check(H5Dread(d.id(), t.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()), "read dataset",
        object);
}

void walk_object(hid_t obj, DamageWalk& walk);

herr_t visit_member(hid_t group, const char* name, const H5L_info_t* info, void* data) {
  DamageWalk& walk = *static_cast<DamageWalk*>(data);
  if (info->type != H5L_TYPE_HARD) return 0;
  const std::string parent = walk.path;
  walk.path = (parent == "/" ? "/" : parent + "/") + name;
  try {
    Handle member(check_id(H5Oopen(group, name, H5P_DEFAULT), "open object", walk.path), H5Oclose);
    walk_object(member.id(), walk);
  } catch (...) {
    walk.error = std::current_exception();
    return -1;
  }
  walk.path = parent;
  return 0;
}

// An object's attribute index (attribute values are not read: those of variable-length
// strings are in the global heap, which HDF5 parses without a check), its data if it is a
// dataset, its members if it is a group. The first failure stops the walk.
void walk_object(hid_t obj, DamageWalk& walk) {
  hsize_t at = 0;
  check(H5Aiterate2(
            obj, H5_INDEX_NAME, H5_ITER_INC, &at,
            [](hid_t, const char*, const H5A_info_t*, void*) -> herr_t { return 0; }, nullptr),
        "list attributes", walk.path);
  if (H5Iget_type(obj) == H5I_DATASET) read_all(obj, walk.path);
  if (H5Iget_type(obj) != H5I_GROUP) return;
  at = 0;
  const herr_t rc = H5Literate(obj, H5_INDEX_NAME, H5_ITER_INC, &at, visit_member, &walk);
  if (walk.error) {
    H5Eclear2(H5E_DEFAULT);  // HDF5's report of the stopped iteration
    std::rethrow_exception(std::exchange(walk.error, nullptr));
  }
  check(rc, "list members", walk.path);
}

}  // namespace

std::string find_damage(const Handle& file) {
  const Guard guard;
  DamageWalk walk{"/", nullptr};
  try {
    Handle root = open_group(file, "/");
    walk_object(root.id(), walk);
  } catch (const Damaged& e) {
    return e.what();
  } catch (const Failure& e) {  // not a checksum of HDF5's, but the file's did not match
    return Damaged(walk.path, e.what()).what();
  }
  return "";
}

namespace {

// Adds the chunks of every chunked dataset below `group` to `out`.
herr_t add_chunk_extents(hid_t group, const char* name, const H5L_info_t* info, void* data) {
  auto& out = *static_cast<std::vector<std::pair<uint64_t, uint64_t>>*>(data);
  if (info->type != H5L_TYPE_HARD) return 0;
  const hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
  if (obj < 0) return -1;
  herr_t rc = 0;
  if (H5Iget_type(obj) == H5I_GROUP) {
    hsize_t at = 0;
    rc = H5Literate(obj, H5_INDEX_NAME, H5_ITER_INC, &at, add_chunk_extents, data);
  } else if (H5Iget_type(obj) == H5I_DATASET) {
    const hid_t dcpl = H5Dget_create_plist(obj);
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED) {
      const hid_t space = H5Dget_space(obj);
      hsize_t chunks = 0;
      rc = space < 0 ? -1 : H5Dget_num_chunks(obj, space, &chunks);
      for (hsize_t i = 0; rc >= 0 && i < chunks; ++i) {
        unsigned mask = 0;
        haddr_t address = HADDR_UNDEF;
        hsize_t bytes = 0;
        rc = H5Dget_chunk_info(obj, space, i, nullptr, &mask, &address, &bytes);
        if (rc >= 0 && address != HADDR_UNDEF) out.emplace_back(uint64_t(address), uint64_t(bytes));
      }
      if (space >= 0) H5Sclose(space);
    }
    if (dcpl >= 0) H5Pclose(dcpl);
  }
  H5Oclose(obj);
  return rc < 0 ? -1 : 0;
}

}  // namespace

std::vector<std::pair<uint64_t, uint64_t>> chunk_extents(const Handle& file) {
  const Guard guard;
  std::vector<std::pair<uint64_t, uint64_t>> out;
  hsize_t at = 0;
  Handle root = open_group(file, "/");
  check(H5Literate(root.id(), H5_INDEX_NAME, H5_ITER_INC, &at, add_chunk_extents, &out),
        "list the chunks");
  hsize_t base = 0;  // where chunk addresses count from
  if (chunk_addresses_skip_user_block()) {
    Handle fcpl(check_id(H5Fget_create_plist(file.id()), "creation properties"), H5Pclose);
    check(H5Pget_userblock(fcpl.id(), &base), "user block");
  }
  for (auto& [at_byte, bytes] : out) at_byte += base;
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace aetrain::h5
