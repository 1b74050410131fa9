// HDF5 data files (src/input_format.hpp): a 2-D dataset of numbers, rows first, and every file
// it reaches into (external links on its path, virtual sources, external raw files), checked
// as HDF5 will find them when the rows are read.
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <numeric>

#include "h5.hpp"
#include "input_format.hpp"

namespace aetrain {
namespace {

[[noreturn]] void bad_file(const std::string& file, const std::string& dataset,
                           const std::string& what) {
  input_error(file, dataset, what);
}

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

// One dataset's rows, read through HDF5's default (serial) driver, each chunk once.
class Hdf5File : public InputFile {
 public:
  Hdf5File(const std::string& file, const std::string& dataset) : name_(file), dataset_(dataset) {
    try {
      file_ = h5::open_file(file);
      data_ = h5::open_dataset_to_stream(file_, dataset);
    } catch (const h5::Failure& e) {
      bad_file(name_, dataset_, e.what());
    }
  }
  void read(int64_t first, int64_t n, double* out) override { read_rows(first, n, out); }
  void read(int64_t first, int64_t n, float* out) override { read_rows(first, n, out); }

 private:
  template <class S>
  void read_rows(int64_t first, int64_t n, S* out) {
    try {
      h5::read_rows(data_, first, n, out);  // HDF5 converts to S
    } catch (const h5::Failure& e) {
      bad_file(name_, dataset_, e.what());
    }
  }
  std::string name_, dataset_;
  h5::Handle file_, data_;  // the dataset closes first
};

class Hdf5Input : public Hdf5Format {
 public:
  InputProbe probe(const std::string& file, const std::string& dataset, Accept accept,
                   std::vector<std::string>& reached) const override {
    if (!h5::is_hdf5(file)) bad_file(file, "", "not an HDF5 file (or truncated)");
    InputProbe p;
    try {
      const h5::Handle f = h5::open_file(file);
      check_dependencies(file, dataset, reached);
      if (!h5::exists(f, dataset)) bad_file(file, dataset, "no such dataset");
      if (!h5::is_dataset(f, dataset)) bad_file(file, dataset, "is a group, not a dataset");
      const h5::Handle d = h5::open_dataset(f, dataset);
      const std::vector<int64_t> dims = h5::shape(d);
      if (dims.size() != 2)
        bad_file(file, dataset,
                 "has " + std::to_string(dims.size()) +
                     " dimensions; a 2-D dataset (rows are samples) is needed");
      const h5::TypeClass type = h5::type_class(d);
      if (type == h5::TypeClass::integer && accept == Accept::floats)
        bad_file(file, dataset,
                 "holds " + h5::type_name(d) +
                     " values; integer data needs a normalization: --normalize minmax (or "
                     "standard) when training, stored with the model");
      if (type != h5::TypeClass::floating && type != h5::TypeClass::integer)
        bad_file(file, dataset, "holds " + h5::type_name(d) + " values; numbers are needed");
      if (dims[1] < 1) bad_file(file, dataset, "has no columns");
      const size_t value_size = h5::value_size(d);
      p.rows = dims[0];
      p.cols = dims[1];
      p.float64 = type == h5::TypeClass::floating && value_size > sizeof(float);
      p.stored_row_bytes = int64_t(value_size) * p.cols;
      p.chunk_rows = h5::chunk_rows(d);
    } catch (const h5::Failure& e) {
      bad_file(file, dataset, e.what());
    }
    return p;
  }

  std::unique_ptr<InputFile> open(const std::string& file,
                                  const std::string& dataset) const override {
    return std::make_unique<Hdf5File>(file, dataset);
  }
};

}  // namespace

const InputFormat& hdf5_input() {
  static const Hdf5Input format;
  return format;
}

}  // namespace aetrain
