#include "aetrain/sources.hpp"

#include <glob.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "aetrain/error.hpp"
#include "input_format.hpp"

namespace aetrain {
namespace {

[[noreturn]] void bad_file(const std::string& file, const std::string& dataset,
                           const std::string& what) {
  input_error(file, dataset, what);
}

std::vector<std::string> glob_sorted(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out(g.gl_pathv, g.gl_pathv + (rc == 0 ? g.gl_pathc : 0));
  globfree(&g);
  std::sort(out.begin(), out.end());
  return out;
}

Sources probe_all(const DataSource& src, Accept accept) {
  Sources s;
  const std::vector<std::string> paths = expand_paths(src.files, &s.inputs);
  for (const std::string& path : paths) {
    if (!std::filesystem::exists(path)) bad_file(path, "", "no such file");
    std::vector<std::string> reached;
    const InputProbe p = input_format(path).probe(path, src.dataset, accept, reached);
    if (s.files.empty()) {
      s.cols = p.cols;
      s.chunk_rows = p.chunk_rows;
      s.stored_row_bytes = p.stored_row_bytes;
    } else if (p.cols != s.cols) {
      bad_file(path, src.dataset,
               "has " + std::to_string(p.cols) + " columns; " + s.files.front().file + ": " +
                   src.dataset + " has " + std::to_string(s.cols));
    }
    if (p.float64) s.precision = Precision::float64;
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

void input_error(const std::string& file, const std::string& dataset, const std::string& what) {
  throw Error(ExitCode::data, file + ": " + (dataset.empty() ? "" : dataset + ": ") + what);
}

const InputFormat& input_format(const std::string&) { return hdf5_input(); }

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
  std::unique_ptr<InputFile> file;
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
    if (impl_->open != index) {
      impl_->file.reset();
      impl_->open = SIZE_MAX;
      impl_->file = input_format(e.file).open(e.file, e.dataset);
      impl_->open = index;
    }
    impl_->file->read(local, count, out);  // converted to S
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

namespace {

// for_each_block: the stored values in double, and with `norm` the normalized ones in float.
template <class F>
void read_blocks(const Sources& sources, RowRange rows, int64_t block_rows,
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

Moments dataset_moments(const Sources& sources, Scatter kind, int64_t block_rows,
                        const Comm& comm) {
  Moments local(sources.cols, kind);
  comm.agree([&] {
    for_each_block(sources, even_split(sources.rows, comm.rank(), comm.size()), block_rows,
                   [&](int64_t, int64_t, ConstMatrixMap<double> stored) { local.add(stored); });
  });
  return merge_over_ranks(local, comm);
}

}  // namespace aetrain
