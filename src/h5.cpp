#include "aetrain/h5.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <numeric>

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

// What the error stack says about the last failure, from the innermost entry out.
struct StackReason {
  std::string system;     // the system's reason: strerror of an errno that a driver recorded
  std::string mpi;        // an MPI-IO error string
  std::string innermost;  // HDF5's deepest description
};

herr_t read_entry(unsigned n, const H5E_error2_t* e, void* out) {
  StackReason& r = *static_cast<StackReason*>(out);
  const std::string desc = e->desc ? e->desc : "";
  if (n == 0) r.innermost = desc;
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

[[noreturn]] void fail(const std::string& what) {
  StackReason r;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, read_entry, &r);
  H5Eclear2(H5E_DEFAULT);
  const bool system = !r.system.empty() || !r.mpi.empty();
  throw Failure(what,
                one_line(!r.system.empty() ? r.system : !r.mpi.empty() ? r.mpi : r.innermost),
                system);
}

hid_t check_id(hid_t id, const std::string& what) {
  if (id < 0) fail(what);
  return id;
}

void check(herr_t rc, const std::string& what) {
  if (rc < 0) fail(what);
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
Handle untimed(hid_t cls) {
  Handle p = plist(cls);
  check(H5Pset_obj_track_times(p.id(), false), "property list");
  return p;
}

void write_attr(const Handle& obj, const std::string& name, hid_t file_type, hid_t mem_type,
                const Handle& where, const void* value) {
  Handle a(check_id(H5Acreate2(obj.id(), name.c_str(), file_type, where.id(), H5P_DEFAULT,
                               H5P_DEFAULT),
                    "create attribute " + name),
           H5Aclose);
  check(H5Awrite(a.id(), mem_type, value), "write attribute " + name);
}

Handle open_attr(const Handle& obj, const std::string& name) {
  if (!has_attribute(obj, name)) throw Failure("attribute '" + name + "' is missing");
  return {check_id(H5Aopen(obj.id(), name.c_str(), H5P_DEFAULT), "open attribute " + name),
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
  return {check_id(H5Fopen("in-memory image", H5F_ACC_RDONLY, fapl.id()), "cannot open"),
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

MemoryFile::MemoryFile() : buffer_(std::make_unique<Buffer>()) {
  const Guard guard;
  quiet_once();
  static int files = 0;  // the core driver tells open files apart by name
  Handle fapl = plist(H5P_FILE_ACCESS);
  check(H5Pset_fapl_core(fapl.id(), 1 << 20, /*backing_store=*/false), "memory file access");
  H5FD_file_image_callbacks_t callbacks = {&Buffer::allocate, &Buffer::copy,  &Buffer::resize,
                                           &Buffer::release,  &Buffer::share, &Buffer::keep,
                                           buffer_.get()};
  check(H5Pset_file_image_callbacks(fapl.id(), &callbacks), "memory file access");
  const std::string name = "in-memory file " + std::to_string(++files);
  file_ = Handle(check_id(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id()),
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
  const ssize_t size = H5Fget_file_image(file_.id(), nullptr, 0);
  if (size < 0) fail("file image");
  if (!file_.reset() || !buffer_->taken) throw Failure("closing the file in memory failed");
  return {static_cast<const char*>(buffer_->taken), std::min(size_t(size), buffer_->size)};
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
                              s.id(), lcpl.id(),
                              dcpl.id(), H5P_DEFAULT),
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

Handle create_file(const std::string& path) {
  const Guard guard;
  quiet_once();
  return {check_id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                   "cannot create " + path),
          H5Fclose};
}

void flush(const Handle& file) {
  const Guard guard;
  check(H5Fflush(file.id(), H5F_SCOPE_GLOBAL), "flush");
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
      if (r <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
      }
      prefix += '/';
    }
    pos = next + 1;
  }
  return true;
}

Handle open_group(const Handle& loc, const std::string& path) {
  const Guard guard;
  return {check_id(H5Gopen2(loc.id(), path.c_str(), H5P_DEFAULT), "open group " + path), H5Gclose};
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
  return {check_id(H5Dopen2(loc.id(), path.c_str(), H5P_DEFAULT), "open dataset " + path),
          H5Dclose};
}

Handle open_dataset_to_stream(const Handle& loc, const std::string& path) {
  const Guard guard;
  Handle dapl = plist(H5P_DATASET_ACCESS);
  check(H5Pset_chunk_cache(dapl.id(), H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0,
                           H5D_CHUNK_CACHE_W0_DEFAULT),
        "dataset access");
  return {check_id(H5Dopen2(loc.id(), path.c_str(), dapl.id()), "open dataset " + path),
          H5Dclose};
}

bool is_dataset(const Handle& loc, const std::string& path) {
  const Guard guard;
  if (!exists(loc, path)) return false;
  // H5Iget_type on the opened object: the same call in HDF5 1.10, 1.12 and 1.14 (whose
  // H5Oget_info_by_name takes another argument list under the default API).
  const hid_t object = H5Oopen(loc.id(), path.c_str(), H5P_DEFAULT);
  if (object < 0) {
    H5Eclear2(H5E_DEFAULT);
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
    case H5T_INTEGER: return bits + (H5Tget_sign(t.id()) == H5T_SGN_NONE ? "unsigned " : "") +
                             "integer";
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

void read_rows_as(const Handle& dataset, int64_t first, int64_t n, hid_t mem_type, void* out) {
  if (n == 0) return;
  Handle file_space = space(H5Dget_space(dataset.id()));
  hsize_t dims[2] = {0, 0};
  if (H5Sget_simple_extent_ndims(file_space.id()) != 2) fail("not a 2-D dataset");
  check(H5Sget_simple_extent_dims(file_space.id(), dims, nullptr), "dataspace dims");
  const hsize_t start[2] = {hsize_t(first), 0}, count[2] = {hsize_t(n), dims[1]};
  check(H5Sselect_hyperslab(file_space.id(), H5S_SELECT_SET, start, nullptr, count, nullptr),
        "select rows");
  // A memory space of the selection's own shape: with a flat one HDF5 maps the chunks of a
  // compressed dataset element run by element run, 5 times slower (measured on gzip chunks of
  // 938 x 25 values).
  Handle mem_space = simple_space({n, int64_t(dims[1])});
  check(H5Dread(dataset.id(), mem_type, mem_space.id(), file_space.id(), H5P_DEFAULT, out),
        "read rows");
}

}  // namespace

void read_rows(const Handle& dataset, int64_t first, int64_t n, float* out) {
  const Guard guard;
  read_rows_as(dataset, first, n, H5T_NATIVE_FLOAT, out);
}

void read_rows(const Handle& dataset, int64_t first, int64_t n, double* out) {
  const Guard guard;
  read_rows_as(dataset, first, n, H5T_NATIVE_DOUBLE, out);
}

int64_t chunk_rows(const Handle& dataset) {
  const Guard guard;
  Handle dcpl(check_id(H5Dget_create_plist(dataset.id()), "creation properties"), H5Pclose);
  if (H5Pget_layout(dcpl.id()) != H5D_CHUNKED) return 0;
  hsize_t dims[2] = {0, 0};
  if (H5Pget_chunk(dcpl.id(), 2, dims) != 2) return 0;
  return int64_t(dims[0]);
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
                   const std::vector<SourceEntry>& sources, bool write_values) {
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
  Handle s = simple_space({int64_t(sources.size())});
  Handle dcpl = untimed(H5P_DATASET_CREATE);
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
  if (n[0] > 0)
    check(H5Dread(d.id(), t.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()),
          "read dataset " + name);
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
  Handle dcpl = untimed(H5P_DATASET_CREATE);
  Handle d(check_id(H5Dcreate2(loc.id(), name.c_str(), file_type, s.id(), H5P_DEFAULT, dcpl.id(),
                               H5P_DEFAULT),
                    "create dataset " + name),
           H5Dclose);
  check(H5Dwrite(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "write dataset " + name);
}

template <class T>
std::vector<T> read_typed(const Handle& loc, const std::string& path,
                          const std::vector<int64_t>& dims, hid_t mem_type) {
  if (!is_dataset(loc, path)) throw Failure("dataset " + path + " is missing");
  Handle d = open_dataset(loc, path);
  if (shape(d) != dims || type_class(d) != TypeClass::floating)
    throw Failure("dataset " + path + " has the wrong shape or type");
  const int64_t n = std::accumulate(dims.begin(), dims.end(), int64_t(1), std::multiplies<>());
  std::vector<T> out(static_cast<size_t>(n));
  check(H5Dread(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()),
        "read dataset " + path);
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

bool has_attribute(const Handle& obj, const std::string& name) {
  const Guard guard;
  const htri_t r = H5Aexists(obj.id(), name.c_str());
  if (r < 0) H5Eclear2(H5E_DEFAULT);
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
    check(H5Aread(a.id(), mem.id(), &text), "read attribute " + name);
    std::string value = text ? text : "";
    H5free_memory(text);
    return value;
  }
  std::string value(H5Tget_size(t.id()), '\0');
  Handle mem = type(H5Tcopy(H5T_C_S1));
  check(H5Tset_size(mem.id(), value.size()), "string type");
  check(H5Aread(a.id(), mem.id(), value.data()), "read attribute " + name);
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
  check(H5Aread(a.id(), H5T_NATIVE_INT64, &value), "read attribute " + name);
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
  check(H5Aread(a.id(), H5T_NATIVE_DOUBLE, &value), "read attribute " + name);
  return value;
}

std::vector<int64_t> read_int_array_attribute(const Handle& obj, const std::string& name) {
  const Guard guard;
  Handle a = open_attr(obj, name);
  Handle t = type(H5Aget_type(a.id()));
  if (H5Tget_class(t.id()) != H5T_INTEGER)
    throw Failure("attribute '" + name + "' is not an integer array");
  std::vector<int64_t> value(size_t(element_count(a)));
  check(H5Aread(a.id(), H5T_NATIVE_INT64, value.data()), "read attribute " + name);
  return value;
}

}  // namespace aetrain::h5
