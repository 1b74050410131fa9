#include "aetrain/sources.hpp"

#include <glob.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "aetrain/error.hpp"
#include "aetrain/h5.hpp"

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

Probe probe_file(const std::string& file, const std::string& dataset, Accept accept) {
  if (!std::filesystem::exists(file)) bad_file(file, "", "no such file");
  if (!h5::is_hdf5(file)) bad_file(file, "", "not an HDF5 file (or truncated)");
  Probe p;
  p.entry.file = file;
  p.entry.dataset = dataset;
  try {
    const h5::Handle f = h5::open_file(file);
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
    Probe p = probe_file(path, src.dataset, accept);
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
    if (p.type != h5::TypeClass::floating || p.value_size != sizeof(float)) s.float32 = false;
    p.entry.first_row = s.rows;
    s.rows += p.entry.rows;
    s.files.push_back(p.entry);
    s.inputs.push_back(path);
  }
  if (s.rows < 1)
    bad_file(paths.front(), src.dataset,
             paths.size() > 1 ? "has no rows, nor have the other files" : "has no rows");
  return s;
}

// The table as text, for the broadcast: fields separated by NUL, which no path holds.
std::string pack(const Sources& s) {
  std::string out;
  for (int64_t v : {s.rows, s.cols, int64_t(s.precision), int64_t(s.float32), s.chunk_rows,
                    s.stored_row_bytes, int64_t(s.files.size()), int64_t(s.inputs.size())})
    out += std::to_string(v) + '\0';
  out += s.name + '\0';
  for (const std::string& input : s.inputs) out += input + '\0';
  for (const SourceEntry& e : s.files)
    out += e.file + '\0' + e.dataset + '\0' + std::to_string(e.first_row) + '\0' +
           std::to_string(e.rows) + '\0';
  return out;
}

Sources unpack(const std::string& text) {
  size_t at = 0;
  const auto next = [&] {
    const size_t end = text.find('\0', at);
    std::string field = text.substr(at, end - at);
    at = end + 1;
    return field;
  };
  const auto number = [&] { return std::stoll(next()); };
  Sources s;
  s.rows = number();
  s.cols = number();
  s.precision = Precision(number());
  s.float32 = number() != 0;
  s.chunk_rows = number();
  s.stored_row_bytes = number();
  s.files.resize(size_t(number()));
  s.inputs.resize(size_t(number()));
  s.name = next();
  for (std::string& input : s.inputs) input = next();
  for (SourceEntry& e : s.files) {
    e.file = next();
    e.dataset = next();
    e.first_row = number();
    e.rows = number();
  }
  return s;
}

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

std::string describe(const DataSource& src) {
  if (src.files.empty()) return src.dataset;
  const std::string more = src.files.size() > 1
                               ? " and " + std::to_string(src.files.size() - 1) + " more"
                               : "";
  return src.files.front() + more + ":" + src.dataset;
}

Sources probe_sources(const DataSource& src, const Comm& comm, Accept accept) {
  std::string packed;
  comm.root_decides([&] {
    Sources s = probe_all(src, accept);
    s.name = s.files.size() == 1 ? s.files[0].file + ":" + src.dataset
                                 : s.files[0].file + " and " + std::to_string(s.files.size() - 1) +
                                       " more files:" + src.dataset;
    packed = pack(s);
  });
  comm.broadcast(packed);
  return unpack(packed);
}

int64_t rows_per_block(int64_t cols) {
  return std::max<int64_t>(1, (int64_t(4) << 20) /
                                  (int64_t(sizeof(double)) * std::max<int64_t>(1, cols)));
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
  size_t i = size_t(std::upper_bound(sources_.files.begin(), sources_.files.end(), row,
                                     [](int64_t r, const SourceEntry& e) { return r < e.first_row; }) -
                    sources_.files.begin()) - 1;
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

void SourceReader::read(int64_t first, int64_t n, double* out) {
  read_stored(first, n, out);
}

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
