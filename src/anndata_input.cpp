// Single-cell files (src/input_format.hpp): AnnData's .h5ad, whose sparse matrices are groups of
// compressed sparse rows (data, indices, indptr, the attribute shape) beside the tables of its
// rows (obs) and columns (var), and 10x Genomics' HDF5 (/matrix: the same arrays compressed by
// cells, a dataset shape of genes x cells, barcodes and features). Both are read as rows of
// cells, densified a block of rows at a time.
#include <algorithm>
#include <numeric>

#include "h5.hpp"
#include "input_format.hpp"

namespace aetrain {
namespace {

[[noreturn]] void bad_file(const std::string& file, const std::string& dataset,
                           const std::string& what) {
  input_error(file, dataset, what);
}

std::string encoding(const h5::Handle& obj) {
  return h5::has_attribute(obj, "encoding-type") ? h5::read_string_attribute(obj, "encoding-type")
                                                 : "";
}

// "/layers/counts" -> "/layers"; "X" -> "/".
std::string parent_of(const std::string& path) {
  std::string p = path.starts_with('/') ? path : "/" + path;
  while (p.size() > 1 && p.ends_with('/')) p.pop_back();
  const size_t slash = p.rfind('/');
  return slash == 0 ? "/" : p.substr(0, slash);
}

std::string child(const std::string& group, const std::string& name) {
  return group.ends_with('/') ? group + name : group + "/" + name;
}

// How a group stores its matrix, as found by its content.
struct Layout {
  bool tenx = false;  // 10x: the dataset `shape` is (genes, cells), compressed by cells
  int64_t rows = 0, cols = 0;
};

bool holds_arrays(const h5::Handle& g) {
  return h5::exists(g, "data") && h5::exists(g, "indices") && h5::exists(g, "indptr");
}

// The layout of a group that holds a sparse matrix; refuses any other group.
Layout layout_of(const h5::Handle& f, const std::string& file, const std::string& dataset) {
  const h5::Handle g = h5::open_group(f, dataset);
  const std::string kind = encoding(g);
  Layout l;
  if (kind == "csr_matrix") {
    const std::vector<int64_t> shape = h5::read_int_array_attribute(g, "shape");
    if (shape.size() != 2) bad_file(file, dataset, "its attribute shape is not 2 numbers");
    l.rows = shape[0];
    l.cols = shape[1];
  } else if (kind == "csc_matrix") {
    bad_file(file, dataset,
             "is a CSC matrix (compressed by columns), which would be read a whole column at a "
             "time; store it as CSR (rows are cells): in Python, adata.X = adata.X.tocsr() (or "
             "adata.layers[name] = adata.layers[name].tocsr()), then adata.write_h5ad(path)");
  } else if (kind.empty() && holds_arrays(g) && h5::is_dataset(g, "shape")) {
    const h5::Handle s = h5::open_dataset(g, "shape");
    std::vector<int64_t> shape(2, 0);
    if (h5::shape(s) != std::vector<int64_t>{2} || h5::type_class(s) != h5::TypeClass::integer)
      bad_file(file, dataset, "its dataset shape is not 2 integers");
    h5::read_range(s, 0, 2, shape.data());
    l.tenx = true;
    l.rows = shape[1];  // cells
    l.cols = shape[0];  // genes
  } else {
    bad_file(file, dataset,
             "is a group" + (kind.empty() ? std::string() : " of encoding " + kind) +
                 ", not a dataset or a sparse matrix (AnnData csr_matrix, 10x matrix)");
  }
  if (l.rows < 0 || l.cols < 1) bad_file(file, dataset, "has no columns");
  return l;
}

// The dataset `name` of a sparse group, 1-D, of integers (or numbers), checked.
h5::Handle array(const h5::Handle& g, const std::string& file, const std::string& dataset,
                 const std::string& name, bool integers) {
  if (!h5::is_dataset(g, name)) bad_file(file, dataset, "has no dataset " + name);
  h5::Handle d = h5::open_dataset_to_stream(g, name);
  if (h5::shape(d).size() != 1) bad_file(file, dataset, name + " is not 1-D");
  const h5::TypeClass type = h5::type_class(d);
  if (type != h5::TypeClass::integer && (integers || type != h5::TypeClass::floating))
    bad_file(file, dataset,
             name + " holds " + h5::type_name(d) + " values; " +
                 (integers ? "integers" : "numbers") + " are needed");
  return d;
}

// One sparse matrix's rows, densified a block at a time, every entry checked.
class CompressedFile : public InputFile {
 public:
  CompressedFile(const std::string& file, const std::string& dataset)
      : name_(file), dataset_(dataset) {
    try {
      file_ = h5::open_file(file);
      cols_ = layout_of(file_, file, dataset).cols;
      const h5::Handle g = h5::open_group(file_, dataset);
      data_ = array(g, file, dataset, "data", false);
      indices_ = array(g, file, dataset, "indices", true);
      indptr_ = array(g, file, dataset, "indptr", true);
      values_ = h5::shape(data_)[0];
    } catch (const h5::Failure& e) {
      bad_file(name_, dataset_, e.what());
    }
    seen_.assign(size_t(cols_), -1);
  }
  void read(int64_t first, int64_t n, double* out) override { read_rows(first, n, out); }
  void read(int64_t first, int64_t n, float* out) override { read_rows(first, n, out); }

  bool read(int64_t first, int64_t n, CompressedRows& out) override {
    std::vector<int64_t>& ptr = out.ptr;
    ptr.resize(size_t(n + 1));
    out.cols.clear();
    out.values.clear();
    if (n == 0) {
      ptr[0] = 0;
      return true;
    }
    try {
      h5::read_range(indptr_, first, n + 1, ptr.data());
    } catch (const h5::Failure& e) {
      bad_file(name_, dataset_, e.what());
    }
    for (int64_t r = 0; r < n; ++r) {
      if (ptr[size_t(r) + 1] < ptr[size_t(r)])
        bad_row(first + r, "indptr decreases (" + std::to_string(ptr[size_t(r)]) + " then " +
                               std::to_string(ptr[size_t(r) + 1]) + ")");
      if (ptr[size_t(r) + 1] > values_ || ptr[size_t(r)] < 0)
        bad_row(first + r, "indptr " + std::to_string(ptr[size_t(r) + 1]) + " is past the data (" +
                               std::to_string(values_) + " values)");
    }
    const int64_t lo = ptr.front(), count = ptr.back() - lo;
    out.cols.resize(size_t(count));
    out.values.resize(size_t(count));
    try {
      h5::read_range(indices_, lo, count, out.cols.data());
      h5::read_range(data_, lo, count, out.values.data());
    } catch (const h5::Failure& e) {
      bad_file(name_, dataset_, e.what());
    }
    for (int64_t& p : ptr) p -= lo;
    for (int64_t r = 0; r < n; ++r) {
      const int64_t row_id = first + r;
      ++stamp_;  // this read of the row: a row read again is not its own duplicate
      for (int64_t k = ptr[size_t(r)]; k < ptr[size_t(r) + 1]; ++k) {
        const int64_t c = out.cols[size_t(k)];
        if (c < 0 || c >= cols_)
          bad_row(row_id, "column index " + std::to_string(c) + " is out of range (" +
                              std::to_string(cols_) + " columns)");
        if (seen_[size_t(c)] == stamp_)
          bad_row(row_id, "column index " + std::to_string(c) + " appears twice");
        seen_[size_t(c)] = stamp_;
      }
    }
    return true;
  }

 private:
  [[noreturn]] void bad_row(int64_t row, const std::string& what) const {
    bad_file(name_, dataset_, "row " + std::to_string(row) + ": " + what);
  }

  // Densified.
  template <class S>
  void read_rows(int64_t first, int64_t n, S* out) {
    read(first, n, rows_);
    std::fill(out, out + n * cols_, S(0));
    for (int64_t r = 0; r < n; ++r)
      for (int64_t k = rows_.ptr[size_t(r)]; k < rows_.ptr[size_t(r) + 1]; ++k)
        out[r * cols_ + rows_.cols[size_t(k)]] = S(rows_.values[size_t(k)]);
  }

  std::string name_, dataset_;
  h5::Handle file_, data_, indices_, indptr_;  // the datasets close first
  int64_t cols_ = 0, values_ = 0;
  std::vector<int64_t> seen_;  // [column] -> the stamp of the last row read that holds it
  int64_t stamp_ = 0;
  CompressedRows rows_;  // the densified reads' rows
};

class CompressedInput : public Hdf5Format {
 public:
  InputProbe probe(const std::string& file, const std::string& dataset, Accept accept,
                   std::vector<std::string>&) const override {
    InputProbe p;
    try {
      const h5::Handle f = h5::open_file(file);
      const Layout l = layout_of(f, file, dataset);
      const h5::Handle g = h5::open_group(f, dataset);
      const h5::Handle data = array(g, file, dataset, "data", false);
      const h5::Handle indices = array(g, file, dataset, "indices", true);
      const h5::Handle indptr = array(g, file, dataset, "indptr", true);
      const int64_t values = h5::shape(data)[0];
      const std::string shape_from = l.tenx ? "its dataset shape" : "its attribute shape";
      if (h5::shape(indptr)[0] != l.rows + 1)
        bad_file(file, dataset,
                 shape_from + " says " + std::to_string(l.rows) + " rows, but indptr holds " +
                     std::to_string(h5::shape(indptr)[0]) + " entries (rows + 1 are needed)");
      if (h5::shape(indices)[0] != values)
        bad_file(file, dataset,
                 "indices holds " + std::to_string(h5::shape(indices)[0]) + " entries and data " +
                     std::to_string(values) + "; they must be as long");
      int64_t last = 0;
      h5::read_range(indptr, l.rows, 1, &last);
      if (last > values)
        bad_file(file, dataset,
                 "indptr ends at " + std::to_string(last) + ", past the data (" +
                     std::to_string(values) + " values)");
      if (h5::type_class(data) == h5::TypeClass::integer && accept == Accept::floats)
        bad_file(file, dataset,
                 "holds " + h5::type_name(data) +
                     " values; integer data needs a count transform or a normalization "
                     "(--transform log1p, --size-factor N or --normalize)");
      p.rows = l.rows;
      p.cols = l.cols;
      p.compressed = true;
      p.float64 =
          h5::type_class(data) == h5::TypeClass::floating && h5::value_size(data) > sizeof(float);
      // What a row costs to read: its share of the values and their column indices.
      p.stored_row_bytes =
          l.rows == 0
              ? 0
              : std::max<int64_t>(
                    1, values * int64_t(h5::value_size(data) + h5::value_size(indices)) / l.rows);
    } catch (const h5::Failure& e) {
      bad_file(file, dataset, e.what());
    }
    return p;
  }

  std::unique_ptr<InputFile> open(const std::string& file,
                                  const std::string& dataset) const override {
    return std::make_unique<CompressedFile>(file, dataset);
  }
};

// ---- Labels -------------------------------------------------------------------------------

bool is_anndata(const h5::Handle& f) {
  return encoding(h5::open_group(f, "/")) == "anndata" ||
         (h5::exists(f, "/obs") && !h5::is_dataset(f, "/obs") &&
          encoding(h5::open_group(f, "/obs")) == "dataframe");
}

// The index of an AnnData dataframe group (its attribute _index names the dataset).
std::vector<std::string> dataframe_index(const h5::Handle& f, const std::string& group) {
  if (!h5::exists(f, group) || h5::is_dataset(f, group)) return {};
  const h5::Handle g = h5::open_group(f, group);
  if (encoding(g) != "dataframe" || !h5::has_attribute(g, "_index")) return {};
  return h5::read_strings(g, h5::read_string_attribute(g, "_index"));
}

// AnnData's var of a matrix: raw/X's is raw/var, every other's /var.
std::string var_group(const std::string& dataset) {
  const std::string parent = parent_of(dataset);
  return parent == "/raw" ? "/raw/var" : "/var";
}

// The group of a 10x matrix, or "" when the dataset is not one.
std::string tenx_group(const h5::Handle& f, const std::string& dataset) {
  if (!h5::exists(f, dataset) || h5::is_dataset(f, dataset)) return "";
  const h5::Handle g = h5::open_group(f, dataset);
  return encoding(g).empty() && h5::exists(g, "barcodes") ? dataset : "";
}

template <class F>
auto with_file(const std::string& file, const std::string& dataset, F&& f) {
  try {
    const h5::Handle handle = h5::open_file(file);
    return f(handle);
  } catch (const h5::Failure& e) {
    bad_file(file, dataset, e.what());
  }
}

}  // namespace

const InputFormat& compressed_input() {
  static const CompressedInput format;
  return format;
}

bool is_compressed(const std::string& path, const std::string& dataset) {
  if (!h5::is_hdf5(path)) return false;
  try {
    const h5::Handle f = h5::open_file(path);
    if (!h5::exists(f, dataset) || h5::is_dataset(f, dataset)) return false;
    const h5::Handle g = h5::open_group(f, dataset);
    const std::string kind = encoding(g);
    return kind == "csr_matrix" || kind == "csc_matrix" || (kind.empty() && holds_arrays(g));
  } catch (const h5::Failure&) {
    return false;  // the HDF5 format's probe says what is wrong
  }
}

namespace labels {

std::vector<std::string> row_names(const std::string& file, const std::string& dataset) {
  return with_file(file, dataset, [&](const h5::Handle& f) -> std::vector<std::string> {
    const std::string tenx = tenx_group(f, dataset);
    if (!tenx.empty()) return h5::read_strings(f, child(tenx, "barcodes"));
    return is_anndata(f) ? dataframe_index(f, "/obs") : std::vector<std::string>{};
  });
}

std::vector<std::vector<std::string>> column_names(const std::string& file,
                                                   const std::string& dataset) {
  return with_file(file, dataset, [&](const h5::Handle& f) {
    std::vector<std::vector<std::string>> out;
    const std::string tenx = tenx_group(f, dataset);
    if (!tenx.empty()) {
      // v3: features/name and features/id; v2: gene_names and genes.
      for (const char* list : {"features/name", "features/id", "gene_names", "genes"})
        if (h5::is_dataset(f, child(tenx, list)))
          out.push_back(h5::read_strings(f, child(tenx, list)));
      return out;
    }
    if (!is_anndata(f)) return out;
    const std::string var = var_group(dataset);
    std::vector<std::string> index = dataframe_index(f, var);
    if (!index.empty()) out.push_back(std::move(index));
    // Gene symbols beside ids, as scanpy's readers keep them.
    for (const char* column : {"gene_symbols", "feature_name", "gene_ids"})
      if (h5::is_dataset(f, child(var, column)) && !h5::read_strings(f, child(var, column)).empty())
        out.push_back(h5::read_strings(f, child(var, column)));
    return out;
  });
}

std::vector<bool> column_flags(const std::string& file, const std::string& dataset,
                               const std::string& column) {
  return with_file(file, dataset, [&](const h5::Handle& f) {
    const std::string var = var_group(dataset);
    if (!is_anndata(f) || !h5::exists(f, var))
      bad_file(file, dataset,
               "has no AnnData table of its columns (" + var + ") for --features var:" + column);
    const std::string path = child(var, column);
    if (!h5::exists(f, path))
      bad_file(file, dataset,
               var + " has no column " + column + " (--features var:" + column + ")");
    std::string values = path;
    if (!h5::is_dataset(f, path)) {
      const h5::Handle g = h5::open_group(f, path);
      if (encoding(g) != "nullable-boolean")
        bad_file(file, dataset,
                 path + " is not boolean (encoding " + encoding(g) +
                     "): --features var:COLUMN needs a column of True and False");
      values = child(path, "values");
      const h5::Handle mask = h5::open_dataset(f, child(path, "mask"));
      std::vector<double> m(size_t(h5::shape(mask)[0]));
      h5::read_range(mask, 0, int64_t(m.size()), m.data());
      const auto na = std::find(m.begin(), m.end(), 1.0);
      if (na != m.end())
        bad_file(file, dataset,
                 path + " is missing for column " + std::to_string(na - m.begin()) +
                     ": --features var:COLUMN needs True or False for every column");
    }
    const h5::Handle d = h5::open_dataset(f, values);
    if (!h5::is_boolean(d) || h5::shape(d).size() != 1)
      bad_file(file, dataset,
               path + " holds " + h5::type_name(d) +
                   " values, not booleans: --features var:COLUMN needs a column of True and "
                   "False");
    std::vector<double> v(size_t(h5::shape(d)[0]));
    h5::read_range(d, 0, int64_t(v.size()), v.data());
    std::vector<bool> out(v.size());
    std::transform(v.begin(), v.end(), out.begin(), [](double x) { return x != 0; });
    return out;
  });
}

std::string row_table(const std::string& file, const std::string& dataset) {
  return with_file(file, dataset, [&](const h5::Handle& f) -> std::string {
    return is_anndata(f) && h5::exists(f, "/obs") && !h5::is_dataset(f, "/obs") ? "/obs" : "";
  });
}

}  // namespace labels
}  // namespace aetrain
