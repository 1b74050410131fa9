#include "aetrain/sources.hpp"

#include <glob.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "aetrain/error.hpp"
#include "h5.hpp"

namespace aetrain {
namespace {

[[noreturn]] void bad_file(const std::string& file, const std::string& dataset,
                           const std::string& what) {
  throw Error(ExitCode::data, file + ": " + (dataset.empty() ? "" : dataset + ": ") + what);
}

std::vector<std::string> glob_sorted(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out(g.gl_pathv, g.gl_pathv + (rc == 0 ? g.gl_pathc : 0));
  globfree(&g);
  std::sort(out.begin(), out.end());
  return out;
}

// One file checked: its dataset's rows, and what the first file also tells about the data.
struct Probe {
  SourceEntry entry;
  int64_t cols = 0;
  h5::TypeClass type = h5::TypeClass::other;
  size_t value_size = 0;
  int64_t chunk_rows = 0;
};

// ---- What a dataset reaches into: external links, virtual sources, external raw files --------

using Dependency = h5::Dependency;
using DependencyKind = h5::DependencyKind;

// How deep links and virtual datasets may nest (a cycle ends here).
constexpr int max_nesting = 8;
// Open files kept for MPI, the data file itself and the outputs when a virtual dataset's
// sources are counted against the process's limit.
constexpr int64_t reserved_files = 64;

// "rows 500-999" (and the columns when a mapping covers only some of them).
std::string region(const std::vector<int64_t>& first, const std::vector<int64_t>& last,
                   const std::vector<int64_t>& dims) {
  const auto range = [](int64_t a, int64_t b) {
    return a == b ? std::to_string(a) : std::to_string(a) + "-" + std::to_string(b);
  };
  if (first.size() != 2 || last.size() != 2) {
    std::string out = "elements ";
    for (size_t i = 0; i < first.size(); ++i) out += (i ? " x " : "") + range(first[i], last[i]);
    return out;
  }
  std::string out = (first[0] == last[0] ? "row " : "rows ") + range(first[0], last[0]);
  if (dims.size() != 2 || first[1] != 0 || last[1] != dims[1] - 1)
    out += (first[1] == last[1] ? ", column " : ", columns ") + range(first[1], last[1]);
  return out;
}

std::string dims_text(const std::vector<int64_t>& dims) {
  std::string out;
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? " x " : "") + std::to_string(dims[i]);
  return dims.empty() ? "a scalar" : out;
}

// What a dependency is, in a message: "virtual dataset source b.h5:/part (rows 500-999)".
std::string describe(const Dependency& d) {
  switch (d.kind) {
    case DependencyKind::external_link:
      return "external link " + d.object + " -> " + d.name + ":" + d.target;
    case DependencyKind::virtual_source:
      return "virtual dataset source " + d.name + ":" + d.target +
             (d.mapped_first.empty()
                  ? ""
                  : " (" + region(d.mapped_first, d.mapped_last, d.virtual_dims) + ")");
    case DependencyKind::external_file: return "external raw data file " + d.name;
  }
  return "";
}

// The variable that tells HDF5 where to look, and its value now.
std::string variable(DependencyKind kind) {
  return kind == DependencyKind::external_link    ? "HDF5_EXT_PREFIX"
         : kind == DependencyKind::virtual_source ? "HDF5_VDS_PREFIX"
                                                  : "HDF5_EXTFILE_PREFIX";
}

std::string variable_now(DependencyKind kind) {
  const std::string name = variable(kind);
  const char* value = std::getenv(name.c_str());
  return value ? name + "=" + value : name + " is unset";
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// Why a dependency cannot be read as HDF5 would read it, with a remedy; empty when it can.
std::string problem(const Dependency& d) {
  using Status = Dependency::Status;
  const std::string where = d.path.empty() ? d.name : d.path;
  switch (d.status) {
    case Status::ok: break;
    case Status::no_file: {
      std::string remedy = "set " + variable(d.kind) + " to the directory that holds it";
      // Raw files are looked for in the current directory only; HDF5 looks beside the data
      // file when told to.
      if (d.kind == DependencyKind::external_file && !d.name.starts_with('/')) {
        const std::string beside =
            std::filesystem::path(d.holder).parent_path().append(d.name).string();
        if (std::filesystem::exists(beside))
          remedy = "it is in the data file's directory (" + beside +
                   "): set HDF5_EXTFILE_PREFIX='${ORIGIN}' to read it from there";
      }
      return "is missing: no such file (looked for " + joined(d.tried) + "; " +
             variable_now(d.kind) + "): " + remedy;
    }
    case Status::not_hdf5:
      return "cannot be read: " + d.path + " is not an HDF5 file (or is truncated), and HDF5 " +
             "looks there first (looked for " + joined(d.tried) + "): move it away, or set " +
             variable(d.kind) + " to the directory that holds the right file";
    case Status::no_object:
      return "is missing: " + where + " has no " +
             (d.kind == DependencyKind::virtual_source && d.missing == d.target ? "dataset "
                                                                                : "object ") +
             d.missing;
    case Status::not_dataset:
      return "cannot be read: " + where + ":" + d.target + " is a group, not a dataset";
    case Status::unlimited:
      return "is a printf-style (%b) or unlimited mapping, which aetrain does not read (it "
             "cannot tell a missing source from the end of the data): give the source files "
             "to --data instead (a quoted glob or an @list)";
    case Status::too_deep:
      return "cannot be read: links and virtual datasets nest more than " +
             std::to_string(max_nesting) + " deep here (a cycle?)";
    case Status::failed: return "cannot be read: " + d.error;
  }
  if (d.kind == DependencyKind::virtual_source) {
    if (d.source_type != h5::TypeClass::floating && d.source_type != h5::TypeClass::integer)
      return "cannot be read: " + where + ":" + d.target + " holds " + d.source_type_name +
             " values; numbers are needed";
    if (d.selects_all) {
      const int64_t values = std::accumulate(d.source_dims.begin(), d.source_dims.end(), int64_t(1),
                                             std::multiplies<>());
      if (values != d.mapped_values)
        return "does not fit: " + where + ":" + d.target + " is " + dims_text(d.source_dims) +
               " (" + std::to_string(values) + " values); the mapping takes all of it for " +
               std::to_string(d.mapped_values) + " values";
      return "";
    }
    if (d.source_dims.size() != d.selected_first.size())
      return "does not fit: " + where + ":" + d.target + " has " +
             std::to_string(d.source_dims.size()) + " dimensions; the mapping selects in " +
             std::to_string(d.selected_first.size());
    for (size_t i = 0; i < d.source_dims.size(); ++i)
      if (d.selected_last[i] >= d.source_dims[i])
        return "is too small: " + where + ":" + d.target + " is " + dims_text(d.source_dims) +
               "; the mapping reads " + region(d.selected_first, d.selected_last, d.source_dims) +
               " of it";
  }
  if (d.kind == DependencyKind::external_file && d.file_bytes < d.offset + d.bytes)
    return "is too short: " + (d.path == d.name ? "it" : d.path) + " holds " +
           std::to_string(d.file_bytes) + " bytes; the dataset's values are bytes " +
           std::to_string(d.offset) + "-" + std::to_string(d.offset + d.bytes - 1) +
           " of it (HDF5 would read the rest as zeros)";
  return "";
}

// Refuses the first dependency that HDF5 could not read as stored (one line: the dataset, the
// dependencies it was found through, what is wrong, a remedy), and adds every file found to
// `inputs` (the file itself again for a virtual source in it).
void check_dependencies(const std::string& file, const std::string& dataset,
                        std::vector<std::string>& inputs) {
  const std::vector<Dependency> deps = h5::dependencies(file, dataset, max_nesting);
  for (const Dependency& d : deps) {
    const std::string why = problem(d);
    if (why.empty()) continue;
    std::string via;
    for (int p = d.parent; p >= 0; p = deps[size_t(p)].parent)
      via = "through " + describe(deps[size_t(p)]) + ": " + via;
    bad_file(file, dataset, via + describe(d) + " " + why);
  }
  // HDF5 keeps a virtual dataset's source files open while it reads it; past the process's
  // limit of open files it reads the sources it cannot open as the fill value, without a word.
  std::vector<std::string> files;
  for (const Dependency& d : deps)
    if (std::find(files.begin(), files.end(), d.path) == files.end()) files.push_back(d.path);
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
      int64_t(files.size()) + reserved_files > int64_t(limit.rlim_cur))
    bad_file(file, dataset,
             "reading it keeps " + std::to_string(files.size()) +
                 " files open at once, and this process may open " +
                 std::to_string(limit.rlim_cur) + " (less " + std::to_string(reserved_files) +
                 " for MPI and the outputs); HDF5 would read the rest as the fill value: raise "
                 "the limit (ulimit -n " +
                 std::to_string(files.size() + reserved_files) + " before mpirun)");
  for (const Dependency& d : deps) inputs.push_back(d.path);
}

Probe probe_file(const std::string& file, const std::string& dataset, Accept accept,
                 std::vector<std::string>& inputs) {
  if (!std::filesystem::exists(file)) bad_file(file, "", "no such file");
  if (!h5::is_hdf5(file)) bad_file(file, "", "not an HDF5 file (or truncated)");
  Probe p;
  p.entry.file = file;
  p.entry.dataset = dataset;
  try {
    const h5::Handle f = h5::open_file(file);
    check_dependencies(file, dataset, inputs);
    if (!h5::exists(f, dataset)) bad_file(file, dataset, "no such dataset");
    if (!h5::is_dataset(f, dataset)) bad_file(file, dataset, "is a group, not a dataset");
    const h5::Handle d = h5::open_dataset(f, dataset);
    const std::vector<int64_t> dims = h5::shape(d);
    if (dims.size() != 2)
      bad_file(file, dataset,
               "has " + std::to_string(dims.size()) +
                   " dimensions; a 2-D dataset (rows are samples) is needed");
    p.type = h5::type_class(d);
    if (p.type == h5::TypeClass::integer && accept == Accept::floats)
      bad_file(file, dataset,
               "holds " + h5::type_name(d) +
                   " values; integer data needs a normalization: --normalize minmax (or "
                   "standard) when training, stored with the model");
    if (p.type != h5::TypeClass::floating && p.type != h5::TypeClass::integer)
      bad_file(file, dataset, "holds " + h5::type_name(d) + " values; numbers are needed");
    if (dims[1] < 1) bad_file(file, dataset, "has no columns");
    p.entry.rows = dims[0];
    p.cols = dims[1];
    p.value_size = h5::value_size(d);
    p.chunk_rows = h5::chunk_rows(d);
  } catch (const h5::Failure& e) {
    bad_file(file, dataset, e.what());
  }
  return p;
}

Sources probe_all(const DataSource& src, Accept accept) {
  Sources s;
  const std::vector<std::string> paths = expand_paths(src.files, &s.inputs);
  Probe first;
  for (const std::string& path : paths) {
    std::vector<std::string> reached;
    Probe p = probe_file(path, src.dataset, accept, reached);
    if (s.files.empty()) {
      first = p;
      s.cols = p.cols;
      s.chunk_rows = p.chunk_rows;
      s.stored_row_bytes = int64_t(p.value_size) * p.cols;
    } else if (p.cols != s.cols) {
      bad_file(path, src.dataset,
               "has " + std::to_string(p.cols) + " columns; " + first.entry.file + ": " +
                   src.dataset + " has " + std::to_string(s.cols));
    }
    const bool float64 = p.type == h5::TypeClass::floating && p.value_size > sizeof(float);
    if (float64) s.precision = Precision::float64;
    p.entry.first_row = s.rows;
    s.rows += p.entry.rows;
    s.files.push_back(p.entry);
    s.inputs.push_back(path);
    for (std::string& r : reached)
      if (std::find(s.inputs.begin(), s.inputs.end(), r) == s.inputs.end())
        s.inputs.push_back(std::move(r));
  }
  if (s.rows < 1)
    bad_file(paths.front(), src.dataset,
             paths.size() > 1 ? "has no rows, nor have the other files" : "has no rows");
  return s;
}

// Every field of the table, in one order: what the broadcast carries.
template <class F>
void sources_fields(Sources& s, F&& f) {
  f(s.files);
  f(s.rows);
  f(s.cols);
  f(s.precision);
  f(s.chunk_rows);
  f(s.stored_row_bytes);
  f(s.name);
  f(s.inputs);
}

// The fields as bytes, for the broadcast: one visitor writes them (rank 0) and reads them back
// (the other ranks), field by field in the same order.
class Wire {
 public:
  enum Direction { write, read };
  Wire(std::string& bytes, Direction direction) : bytes_(bytes), writing_(direction == write) {}
  void operator()(int64_t& v) { raw(&v, sizeof v); }
  void operator()(Precision& p) {
    int64_t v = int64_t(p);
    (*this)(v);
    p = Precision(v);
  }
  void operator()(std::string& text) {
    int64_t n = int64_t(text.size());
    (*this)(n);
    text.resize(size_t(n));
    raw(text.data(), text.size());
  }
  void operator()(SourceEntry& e) {
    (*this)(e.file);
    (*this)(e.dataset);
    (*this)(e.first_row);
    (*this)(e.rows);
  }
  template <class T>
  void operator()(std::vector<T>& items) {
    int64_t n = int64_t(items.size());
    (*this)(n);
    items.resize(size_t(n));
    for (T& item : items) (*this)(item);
  }

 private:
  void raw(void* data, size_t n) {
    if (writing_) {
      bytes_.append(static_cast<const char*>(data), n);
    } else {
      std::memcpy(data, bytes_.data() + at_, n);
      at_ += n;
    }
  }
  std::string& bytes_;
  bool writing_;
  size_t at_ = 0;
};

}  // namespace

std::vector<std::string> expand_paths(const std::vector<std::string>& specs,
                                      std::vector<std::string>* lists) {
  std::vector<std::string> out;
  for (const std::string& spec : specs) {
    if (spec.starts_with('@')) {
      const std::string list = spec.substr(1);
      std::ifstream in(list);
      if (!in) bad_file(list, "", "cannot read this list of files (" + spec + ")");
      if (lists) lists->push_back(list);
      int64_t before = int64_t(out.size());
      for (std::string line; std::getline(in, line);) {
        line.erase(0, line.find_first_not_of(" \t\r"));
        line.erase(line.find_last_not_of(" \t\r") + 1);
        if (!line.empty() && !line.starts_with('#')) out.push_back(line);
      }
      if (int64_t(out.size()) == before) bad_file(list, "", "names no file (" + spec + ")");
    } else if (spec.find_first_of("*?[") != std::string::npos) {
      const std::vector<std::string> matches = glob_sorted(spec);
      if (matches.empty()) throw Error(ExitCode::data, "no file matches '" + spec + "'");
      out.insert(out.end(), matches.begin(), matches.end());
    } else {
      out.push_back(spec);
    }
  }
  if (out.empty()) throw Error(ExitCode::data, "no data files given");
  return out;
}

std::string name_of_files(const std::string& first, size_t count) {
  return count > 1 ? first + " and " + std::to_string(count - 1) + " more files" : first;
}

Sources probe_sources(const DataSource& src, const Comm& comm, Accept accept) {
  Sources s;
  std::string bytes;
  comm.root_decides([&] {
    s = probe_all(src, accept);
    s.name = name_of_files(s.files[0].file, s.files.size()) + ":" + src.dataset;
    sources_fields(s, Wire(bytes, Wire::write));
  });
  comm.broadcast(bytes);
  if (comm.rank() != 0) sources_fields(s, Wire(bytes, Wire::read));
  return s;
}

int64_t rows_per_block(int64_t cols) {
  return std::max<int64_t>(
      1, (int64_t(4) << 20) / (int64_t(sizeof(double)) * std::max<int64_t>(1, cols)));
}

struct SourceReader::Impl {
  size_t open = SIZE_MAX;  // index of the file open now
  h5::Handle file, dataset;
  std::vector<double> scratch;
};

SourceReader::SourceReader(const Sources& sources)
    : sources_(sources), impl_(std::make_unique<Impl>()) {}
SourceReader::~SourceReader() = default;
SourceReader::SourceReader(SourceReader&&) noexcept = default;
SourceReader& SourceReader::operator=(SourceReader&&) noexcept = default;

int64_t SourceReader::scratch_bytes(const Sources& sources, const Normalization& norm) {
  return norm.identity() ? 0
                         : rows_per_block(sources.cols) * sources.cols * int64_t(sizeof(double));
}

size_t SourceReader::file_of(int64_t row) const {
  size_t i =
      size_t(std::upper_bound(sources_.files.begin(), sources_.files.end(), row,
                              [](int64_t r, const SourceEntry& e) { return r < e.first_row; }) -
             sources_.files.begin()) -
      1;
  while (sources_.files[i].rows == 0) ++i;  // empty files share their first_row with the next
  return i;
}

template <class S>
void SourceReader::read_stored(int64_t first, int64_t n, S* out) {
  const int64_t cols = sources_.cols;
  size_t index = file_of(first);  // then each file the rows run into
  while (n > 0) {
    const SourceEntry& e = sources_.files[index];
    const int64_t local = first - e.first_row, count = std::min(n, e.rows - local);
    if (count <= 0) {
      ++index;
      continue;
    }
    try {
      if (impl_->open != index) {
        impl_->dataset.reset();
        impl_->file.reset();
        impl_->open = SIZE_MAX;
        impl_->file = h5::open_file(e.file);
        impl_->dataset = h5::open_dataset_to_stream(impl_->file, e.dataset);
        impl_->open = index;
      }
      h5::read_rows(impl_->dataset, local, count, out);  // HDF5 converts to S
    } catch (const h5::Failure& ex) {
      bad_file(e.file, e.dataset, ex.what());
    }
    for (int64_t r = 0; r < count; ++r) {
      const S* row = out + r * cols;
      const auto finite = [](S v) { return std::isfinite(v); };
      if (std::all_of(row, row + cols, finite)) continue;
      const int64_t c = std::find_if_not(row, row + cols, finite) - row;
      bad_file(e.file, e.dataset,
               "row " + std::to_string(local + r) + ", column " + std::to_string(c) + " is " +
                   (std::isnan(row[c]) ? "NaN" : "infinite"));
    }
    first += count;
    n -= count;
    out += count * cols;
    ++index;
  }
}

void SourceReader::read(int64_t first, int64_t n, double* out) { read_stored(first, n, out); }

void SourceReader::read(int64_t first, int64_t n, float* out, const Normalization& norm) {
  if (norm.identity()) {
    read_stored(first, n, out);
    return;
  }
  // Through double, a piece at a time: a large offset must not cost float precision.
  const int64_t cols = sources_.cols, piece = rows_per_block(cols);
  impl_->scratch.resize(size_t(std::min(n, piece) * cols));
  for (int64_t done = 0; done < n; done += piece) {
    const int64_t rows = std::min(piece, n - done);
    read_stored(first + done, rows, impl_->scratch.data());
    float* dst = out + done * cols;
    normalize(norm, ConstMatrixMap<double>(impl_->scratch.data(), cols, rows),
              MatrixMap<float>(dst, cols, rows));
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = dst + r * cols;
      if (std::all_of(row, row + cols, [](float v) { return std::isfinite(v); })) continue;
      const int64_t global = first + done + r;
      const SourceEntry& e = sources_.files[file_of(global)];
      const int64_t c =
          std::find_if_not(row, row + cols, [](float v) { return std::isfinite(v); }) - row;
      bad_file(e.file, e.dataset,
               "row " + std::to_string(global - e.first_row) + ", column " + std::to_string(c) +
                   " is infinite after normalization (a value too large for float32)");
    }
  }
}

}  // namespace aetrain
