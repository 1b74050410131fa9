#include "aetrain/sources.hpp"

#include <glob.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <type_traits>
#include <unordered_map>

#include "aetrain/error.hpp"
#include "input_format.hpp"

namespace aetrain {
namespace {

[[noreturn]] void bad_file(const std::string& file, const std::string& dataset,
                           const std::string& what) {
  input_error(file, dataset, what);
}

// The columns the files store (the transform's, or the table's when it has none).
int64_t stored_cols(const Sources& s) {
  return s.transform.identity() ? s.cols : s.transform.stored_cols;
}

std::vector<std::string> glob_sorted(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out(g.gl_pathv, g.gl_pathv + (rc == 0 ? g.gl_pathc : 0));
  globfree(&g);
  std::sort(out.begin(), out.end());
  return out;
}

// The file's lists of column names (names, ids) for looking names up: each name's column, or
// kShared when several columns share it.
class ColumnNames {
 public:
  static constexpr int64_t kShared = -2;
  explicit ColumnNames(const std::vector<std::vector<std::string>>& lists) {
    for (const std::vector<std::string>& list : lists) {
      std::unordered_map<std::string, int64_t>& index = index_.emplace_back();
      for (size_t c = 0; c < list.size(); ++c) {
        const auto [at, fresh] = index.emplace(list[c], int64_t(c));
        if (!fresh) at->second = kShared;
      }
    }
  }
  /// The column of the first list that names it alone; kShared when every list that has the
  /// name gives it to several columns; -1 when none has it.
  int64_t find(const std::string& name) const {
    int64_t found = -1;
    for (const auto& index : index_) {
      const auto at = index.find(name);
      if (at == index.end()) continue;
      if (at->second != kShared) return at->second;
      found = kShared;
    }
    return found;
  }
  /// The first list in which each of `columns` has a name of its own; -1 when none is.
  int64_t unique_for(const std::vector<int64_t>& columns,
                     const std::vector<std::vector<std::string>>& lists) const {
    for (size_t l = 0; l < lists.size(); ++l)
      if (std::all_of(columns.begin(), columns.end(),
                      [&](int64_t c) { return index_[l].at(lists[l][size_t(c)]) != kShared; }))
        return int64_t(l);
    return -1;
  }

 private:
  std::vector<std::unordered_map<std::string, int64_t>> index_;
};

// The columns `names` name in the file's lists; unknown and ambiguous ones refused, the first
// few listed.
std::vector<int64_t> columns_named(const std::vector<std::string>& names, const ColumnNames& index,
                                   const std::string& file, const std::string& dataset,
                                   const std::string& asked_by) {
  std::vector<int64_t> columns;
  std::vector<std::string> unknown, shared;
  for (const std::string& name : names) {
    const int64_t c = index.find(name);
    if (c == -1)
      unknown.push_back(name);
    else if (c == ColumnNames::kShared)
      shared.push_back(name);
    else
      columns.push_back(c);
  }
  const auto listed = [&](const std::vector<std::string>& bad) {
    std::string out;
    for (size_t i = 0; i < std::min<size_t>(bad.size(), 5); ++i) out += (i ? ", " : "") + bad[i];
    return out + (bad.size() > 5 ? " (and " + std::to_string(bad.size() - 5) + " more)" : "") +
           " (" + std::to_string(bad.size()) + " of the " + std::to_string(names.size()) +
           " names of " + asked_by + ")";
  };
  if (!unknown.empty()) bad_file(file, dataset, "has no column named " + listed(unknown));
  if (!shared.empty())
    bad_file(file, dataset,
             "names several columns " + listed(shared) +
                 ": name each by an id of its own (10x features/id, the AnnData var index)");
  return columns;
}

// The names a --features @FILE lists, one a line (blank lines and # comments skipped).
std::vector<std::string> listed_names(const std::string& list) {
  std::ifstream in(list);
  if (!in) bad_file(list, "", "cannot read this list of columns (--features @" + list + ")");
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty() && !line.starts_with('#')) names.push_back(line);
  }
  return names;
}

// Fits `t` to the first file's columns (see probe_sources).
RowTransform fit_transform(RowTransform t, const InputFormat& format, const std::string& file,
                           const std::string& dataset, int64_t stored_cols,
                           const std::vector<std::vector<std::string>>& lists, Sources& s) {
  const ColumnNames index(lists);
  const bool fitted = t.stored_cols > 0;
  if (fitted) {  // a model's: its columns by name where the data names them
    if (!t.names.empty() && !lists.empty()) {
      t.columns = columns_named(t.names, index, file, dataset, "the model's columns");
    } else if (stored_cols != t.stored_cols) {
      bad_file(file, dataset,
               "has " + std::to_string(stored_cols) + " columns; the model's count transform (" +
                   describe(t) + ") was fitted to data of " + std::to_string(t.stored_cols));
    }
    t.stored_cols = stored_cols;
    return t;
  }
  t.stored_cols = stored_cols;
  const std::string& features = t.asked.features;
  if (features.empty()) return t;
  if (features.starts_with("var:")) {
    const std::vector<bool> flags = format.column_flags(file, dataset, features.substr(4));
    if (int64_t(flags.size()) != stored_cols)
      bad_file(file, dataset,
               features + " has " + std::to_string(flags.size()) + " entries for " +
                   std::to_string(stored_cols) + " columns");
    for (int64_t c = 0; c < stored_cols; ++c)
      if (flags[size_t(c)]) t.columns.push_back(c);
  } else {
    const std::string list = features.substr(1);  // the option's check: "@FILE"
    s.inputs.push_back(list);
    if (lists.empty())
      bad_file(file, dataset,
               "names none of its columns, so --features " + features +
                   " cannot find them (AnnData's var index, 10x's features name them)");
    t.columns = columns_named(listed_names(list), index, file, dataset, list);
  }
  std::sort(t.columns.begin(), t.columns.end());
  t.columns.erase(std::unique(t.columns.begin(), t.columns.end()), t.columns.end());
  if (t.columns.empty())
    bad_file(file, dataset, "--features " + features + " names none of its columns");
  // The names the model keeps: from the first list that names each kept column alone (10x
  // gene symbols repeat; their ids do not). Without one, none: the columns go by position.
  if (const int64_t l = index.unique_for(t.columns, lists); l >= 0)
    for (int64_t c : t.columns) t.names.push_back(lists[size_t(l)][size_t(c)]);
  return t;
}

Sources probe_all(const DataSource& src, Accept accept, const RowTransform& asked) {
  Sources s;
  const std::vector<std::string> paths = expand_paths(src.files, &s.inputs);
  std::vector<std::string> first_names;  // the first file's column names
  for (const std::string& path : paths) {
    if (!std::filesystem::exists(path)) bad_file(path, "", "no such file");
    std::vector<std::string> reached;
    const InputFormat& format = input_format(path, src.dataset);
    const InputProbe p = format.probe(path, src.dataset, accept, reached);
    const std::vector<std::vector<std::string>> names = format.column_names(path, src.dataset);
    for (const std::vector<std::string>& list : names)
      if (int64_t(list.size()) != p.cols)
        bad_file(path, src.dataset,
                 "names " + std::to_string(list.size()) +
                     " columns (its var index or features) "
                     "but holds " +
                     std::to_string(p.cols));
    if (s.files.empty()) {
      s.transform = fit_transform(asked, format, path, src.dataset, p.cols, names, s);
      s.cols = s.transform.cols();
      s.chunk_rows = p.chunk_rows;
      s.stored_row_bytes = p.stored_row_bytes;
      if (!names.empty()) first_names = names.front();
    } else if (p.cols != s.transform.stored_cols) {
      bad_file(path, src.dataset,
               "has " + std::to_string(p.cols) + " columns; " + s.files.front().file + ": " +
                   src.dataset + " has " + std::to_string(s.transform.stored_cols));
    } else if (!names.empty() && !first_names.empty() && names.front() != first_names) {
      const auto [here, there] = std::mismatch(names.front().begin(), names.front().end(),
                                               first_names.begin(), first_names.end());
      bad_file(path, src.dataset,
               "its columns are not those of " + s.files.front().file + ": column " +
                   std::to_string(here - names.front().begin()) + " is '" + *here + "' here and '" +
                   *there + "' there (the files must name the same columns " +
                   "in the same order)");
    }
    if (p.float64) s.precision = Precision::float64;
    s.compressed = p.compressed && (s.files.empty() || s.compressed);
    s.files.push_back({path, src.dataset, s.rows, p.rows});
    s.rows += p.rows;
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
  f(s.transform);
  f(s.precision);
  f(s.chunk_rows);
  f(s.compressed);
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
  void operator()(double& v) { raw(&v, sizeof v); }
  void operator()(bool& v) { raw(&v, sizeof v); }
  template <class E>
  requires std::is_enum_v<E>
  void operator()(E& e) {
    int64_t v = int64_t(e);
    (*this)(v);
    e = E(v);
  }
  void operator()(RowTransform& t) {
    (*this)(t.asked.size_factor);
    (*this)(t.asked.scale);
    (*this)(t.asked.features);
    (*this)(t.stored_cols);
    (*this)(t.columns);
    (*this)(t.names);
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

void input_error(const std::string& file, const std::string& dataset, const std::string& what) {
  throw Error(ExitCode::data, file + ": " + (dataset.empty() ? "" : dataset + ": ") + what);
}

const InputFormat& input_format(const std::string& path, const std::string& dataset) {
  return is_compressed(path, dataset) ? compressed_input() : hdf5_input();
}

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

Sources probe_sources(const DataSource& src, const Comm& comm, Accept accept,
                      const RowTransform& transform) {
  Sources s;
  std::string bytes;
  comm.root_decides([&] {
    s = probe_all(src, accept, transform);
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
  std::unique_ptr<InputFile> file;
  std::vector<double> scratch;
  std::vector<double> raw, cooked;  // a transform's rows as stored, and transformed
  CompressedRows part;              // compressed rows of one file, as stored
  std::vector<int64_t> kept;        // [stored column] -> kept column (-1: not kept)
};

SourceReader::SourceReader(const Sources& sources)
    : sources_(sources), impl_(std::make_unique<Impl>()) {}
SourceReader::~SourceReader() = default;
SourceReader::SourceReader(SourceReader&&) noexcept = default;
SourceReader& SourceReader::operator=(SourceReader&&) noexcept = default;

int64_t SourceReader::scratch_bytes(const Sources& sources, const Normalization& norm) {
  const int64_t d = int64_t(sizeof(double));
  const int64_t normalized = norm.identity() ? 0 : rows_per_block(sources.cols) * sources.cols * d;
  const RowTransform& t = sources.transform;
  const int64_t transformed =
      t.identity() ? 0 : rows_per_block(t.stored_cols) * (t.stored_cols + sources.cols) * d;
  return normalized + transformed;
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

template <class F>
void SourceReader::for_each_file(int64_t first, int64_t n, F&& fn) {
  for (size_t index = file_of(first); n > 0; ++index) {  // then each file the rows run into
    const SourceEntry& e = sources_.files[index];
    const int64_t local = first - e.first_row, count = std::min(n, e.rows - local);
    if (count <= 0) continue;
    if (impl_->open != index) {
      impl_->file.reset();
      impl_->open = SIZE_MAX;
      impl_->file = input_format(e.file, e.dataset).open(e.file, e.dataset);
      impl_->open = index;
    }
    fn(e, *impl_->file, local, count);
    first += count;
    n -= count;
  }
}

template <class S>
void SourceReader::read_file_rows(int64_t first, int64_t n, S* out) {
  const int64_t cols = stored_cols(sources_);
  for_each_file(first, n, [&](const SourceEntry& e, InputFile& file, int64_t local, int64_t count) {
    file.read(local, count, out);  // converted to S
    for (int64_t r = 0; r < count; ++r) {
      const S* row = out + r * cols;
      const auto finite = [](S v) { return std::isfinite(v); };
      if (std::all_of(row, row + cols, finite)) continue;
      const int64_t c = std::find_if_not(row, row + cols, finite) - row;
      bad_file(e.file, e.dataset,
               "row " + std::to_string(local + r) + ", column " + std::to_string(c) + " is " +
                   (std::isnan(row[c]) ? "NaN" : "infinite"));
    }
    out += count * cols;
  });
}

template <class S>
void SourceReader::read_stored(int64_t first, int64_t n, S* out) {
  const RowTransform& t = sources_.transform;
  if (t.identity()) {
    read_file_rows(first, n, out);
    return;
  }
  // A piece of rows at a time, as stored, then transformed in double.
  const int64_t stored = t.stored_cols, cols = sources_.cols, piece = rows_per_block(stored);
  impl_->raw.resize(size_t(std::min(n, piece) * stored));
  if constexpr (!std::is_same_v<S, double>) impl_->cooked.resize(size_t(std::min(n, piece) * cols));
  for (int64_t done = 0; done < n; done += piece) {
    const int64_t rows = std::min(piece, n - done);
    read_file_rows(first + done, rows, impl_->raw.data());
    double* dst = nullptr;
    if constexpr (std::is_same_v<S, double>)
      dst = out + done * cols;
    else
      dst = impl_->cooked.data();
    const TransformCheck check = apply(t, ConstMatrixMap<double>(impl_->raw.data(), stored, rows),
                                       MatrixMap<double>(dst, cols, rows));
    if (check.bad_row >= 0) {
      const int64_t global = first + done + check.bad_row;
      const SourceEntry& e = sources_.files[file_of(global)];
      bad_file(e.file, e.dataset,
               "row " + std::to_string(global - e.first_row) + ", column " +
                   std::to_string(check.bad_col) + " is negative (" +
                   std::to_string(impl_->raw[size_t(check.bad_row * stored + check.bad_col)]) +
                   "): " + describe(t) + " needs counts, which are never negative");
    }
    zero_total_ += check.zero_total;
    if constexpr (!std::is_same_v<S, double>)
      std::transform(dst, dst + rows * cols, out + done * cols, [](double v) { return S(v); });
  }
}

bool SourceReader::read(int64_t first, int64_t n, CompressedRows& out) {
  if (!sources_.compressed) return false;
  const RowTransform& t = sources_.transform;
  if (!t.columns.empty() && impl_->kept.empty()) {  // [stored column] -> kept column, or -1
    impl_->kept.assign(size_t(t.stored_cols), -1);
    for (size_t k = 0; k < t.columns.size(); ++k) impl_->kept[size_t(t.columns[k])] = int64_t(k);
  }
  const bool counts = t.asked.size_factor > 0 || t.asked.scale == CountScale::log1p;
  out.ptr.assign(1, 0);
  out.cols.clear();
  out.values.clear();
  CompressedRows& part = impl_->part;
  for_each_file(first, n, [&](const SourceEntry& e, InputFile& file, int64_t local, int64_t count) {
    file.read(local, count, part);
    for (int64_t r = 0; r < count; ++r) {
      const int64_t a = part.ptr[size_t(r)], b = part.ptr[size_t(r) + 1];
      double total = 0;
      for (int64_t k = a; k < b; ++k) {
        const double v = part.values[size_t(k)];
        const auto where = [&] {
          return "row " + std::to_string(local + r) + ", column " +
                 std::to_string(part.cols[size_t(k)]) + " is ";
        };
        if (!std::isfinite(v))
          bad_file(e.file, e.dataset, where() + (std::isnan(v) ? "NaN" : "infinite"));
        if (counts && v < 0)
          bad_file(e.file, e.dataset,
                   where() + "negative (" + std::to_string(v) + "): " + describe(t) +
                       " needs counts, which are never negative");
        total += v;
      }
      double factor = 1;
      if (t.asked.size_factor > 0) {
        factor = total > 0 ? t.asked.size_factor / total : 0;
        if (total == 0) ++zero_total_;
      }
      for (int64_t k = a; k < b; ++k) {
        const int64_t c =
            t.columns.empty() ? part.cols[size_t(k)] : impl_->kept[size_t(part.cols[size_t(k)])];
        if (c < 0) continue;
        const double v = part.values[size_t(k)] * factor;
        out.cols.push_back(c);
        out.values.push_back(t.asked.scale == CountScale::log1p ? std::log1p(v) : v);
      }
      out.ptr.push_back(int64_t(out.cols.size()));
    }
  });
  return true;
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

namespace {

// for_each_block: the stored values in double, and with `norm` the normalized ones in float.
// Returns the rows of total 0 under a size factor.
template <class F>
int64_t read_blocks(const Sources& sources, RowRange rows, int64_t block_rows,
                    const Normalization* norm, F&& fn) {
  SourceReader reader(sources);
  const Index cols = sources.cols;
  Matrix<double> stored(cols, std::max<int64_t>(1, block_rows));
  Matrix<float> normalized(cols, norm ? std::max<int64_t>(1, block_rows) : 0);
  for (int64_t first = rows.begin; first < rows.end; first += block_rows) {
    const int64_t n = std::min(block_rows, rows.end - first);
    reader.read(first, n, stored.data());
    const ConstMatrixMap<double> values(stored.data(), cols, n);
    if (norm) normalize(*norm, values, MatrixMap<float>(normalized.data(), cols, n));
    fn(first, n, values, ConstMatrixMap<float>(normalized.data(), cols, norm ? n : 0));
  }
  return reader.zero_total_rows();
}

}  // namespace

void for_each_block(const Sources& sources, RowRange rows, int64_t block_rows,
                    const StoredBlockFn& fn) {
  read_blocks(sources, rows, block_rows, nullptr,
              [&](int64_t first, int64_t n, ConstMatrixMap<double> stored, ConstMatrixMap<float>) {
                fn(first, n, stored);
              });
}

void for_each_block(const Sources& sources, RowRange rows, int64_t block_rows,
                    const Normalization& norm, const NormalizedBlockFn& fn) {
  read_blocks(sources, rows, block_rows, &norm, fn);
}

Moments dataset_moments(const Sources& sources, Scatter kind, int64_t block_rows, const Comm& comm,
                        int64_t* zero_total) {
  Moments local(sources.cols, kind);
  double zero = 0;
  const RowRange share = even_split(sources.rows, comm.rank(), comm.size());
  comm.agree([&] {
    if (sources.compressed && kind == Scatter::diagonal) {
      // Compressed rows stay compressed: the moments of their non-zeros and of the zeros
      // between them, in blocks of about as many values as a dense block holds.
      SourceReader reader(sources);
      CompressedRows rows;
      const int64_t step = std::max<int64_t>(
          block_rows,
          rows_per_block(std::max<int64_t>(1, sources.stored_row_bytes / int64_t(sizeof(double)))));
      for (int64_t first = share.begin; first < share.end; first += step) {
        const int64_t n = std::min(step, share.end - first);
        reader.read(first, n, rows);
        local.add_sparse(n, rows.cols, rows.values);
      }
      zero = double(reader.zero_total_rows());
      return;
    }
    zero = double(read_blocks(sources, share, block_rows, nullptr,
                              [&](int64_t, int64_t, ConstMatrixMap<double> stored,
                                  ConstMatrixMap<float>) { local.add(stored); }));
  });
  if (zero_total) {
    comm.allreduce_sum(std::span<double>(&zero, 1));
    *zero_total = int64_t(zero);
  }
  return merge_over_ranks(local, comm);
}

std::vector<std::string> row_names(const Sources& sources) {
  std::vector<std::string> names;
  names.reserve(size_t(sources.rows));
  for (const SourceEntry& e : sources.files) {
    std::vector<std::string> file = input_format(e.file, e.dataset).row_names(e.file, e.dataset);
    if (file.empty()) {
      for (int64_t r = 0; r < e.rows; ++r) names.push_back(std::to_string(e.first_row + r));
      continue;
    }
    if (int64_t(file.size()) != e.rows)
      bad_file(e.file, e.dataset,
               "names " + std::to_string(file.size()) +
                   " rows (its obs index or barcodes) but "
                   "holds " +
                   std::to_string(e.rows));
    std::move(file.begin(), file.end(), std::back_inserter(names));
  }
  return names;
}

std::string row_table(const Sources& sources) {
  if (sources.files.size() != 1) return "";
  const SourceEntry& e = sources.files.front();
  return input_format(e.file, e.dataset).row_table(e.file, e.dataset);
}

}  // namespace aetrain
