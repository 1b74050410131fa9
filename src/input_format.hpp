// The formats data files come in, below the sources (aetrain/sources.hpp): probe_sources,
// SourceReader and for_each_block reach a file through this interface alone, so that none of
// their callers learns the format: dense HDF5 datasets (src/hdf5_input.cpp) and compressed
// sparse rows, AnnData's CSR matrices and 10x Genomics' CSC ones (src/anndata_input.cpp), each
// an InputFormat chosen by input_format(). Private to the library.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "aetrain/sources.hpp"

namespace aetrain {

/// What probing one file found: the shape of its dataset, as rows of samples, and how the file
/// stores them.
struct InputProbe {
  int64_t rows = 0, cols = 0;
  bool float64 = false;          // floating-point values wider than 32 bits
  int64_t stored_row_bytes = 0;  // one row as the file stores it
  int64_t chunk_rows = 0;        // the rows of a chunk of its storage; 0 when it has none
  bool compressed = false;       // compressed sparse rows (InputFile's CompressedRows read)
};

/// One file's dataset, open for reading rows by this process alone. Read errors are
/// Error(data) naming the file and the dataset.
class InputFile {
 public:
  virtual ~InputFile() = default;
  /// Rows [first, first + n) of the dataset into out, row after row, converted from what the
  /// file stores (no check of the values).
  virtual void read(int64_t first, int64_t n, double* out) = 0;
  virtual void read(int64_t first, int64_t n, float* out) = 0;
  /// The same rows as compressed sparse rows (as stored, every entry's place checked), for a
  /// format that stores them so; false, and nothing read, for one that does not.
  virtual bool read(int64_t /*first*/, int64_t /*n*/, CompressedRows& /*out*/) { return false; }
};

/// A format of data files.
class InputFormat {
 public:
  virtual ~InputFormat() = default;
  /// Checks that the existing file `file` holds `dataset` as a 2-D table of numbers that
  /// `accept` takes, and that every file reading it reaches into is there and covers what it
  /// reads; appends those files to `reached`. Throws Error(data) naming the file, the dataset
  /// and what is wrong (input_error). One process.
  virtual InputProbe probe(const std::string& file, const std::string& dataset, Accept accept,
                           std::vector<std::string>& reached) const = 0;
  /// Opens a probed file's dataset for reading. Throws Error(data) as InputFile's reads do.
  virtual std::unique_ptr<InputFile> open(const std::string& file,
                                          const std::string& dataset) const = 0;

  // What the file says of the dataset's rows and columns (AnnData's obs and var, 10x's
  // barcodes and features). Each throws Error(data) as probe does.

  /// The rows' names (cells: AnnData's obs index, 10x's barcodes); empty when it names none.
  virtual std::vector<std::string> row_names(const std::string& file,
                                             const std::string& dataset) const = 0;
  /// The columns' names, in one or more lists (gene names, gene ids), each naming every
  /// stored column; empty when it names none.
  virtual std::vector<std::vector<std::string>> column_names(const std::string& file,
                                                             const std::string& dataset) const = 0;
  /// The boolean column `column` of the table of its columns (AnnData's var, e.g.
  /// highly_variable). Throws Error(data) when there is none or it is not boolean.
  virtual std::vector<bool> column_flags(const std::string& file, const std::string& dataset,
                                         const std::string& column) const = 0;
  /// The group that describes the rows (AnnData's /obs), which an AnnData output copies; ""
  /// when there is none.
  virtual std::string row_table(const std::string& file, const std::string& dataset) const = 0;
};

// The labels of AnnData and 10x files, which both HDF5 formats read (src/anndata_input.cpp).
namespace labels {
std::vector<std::string> row_names(const std::string& file, const std::string& dataset);
std::vector<std::vector<std::string>> column_names(const std::string& file,
                                                   const std::string& dataset);
std::vector<bool> column_flags(const std::string& file, const std::string& dataset,
                               const std::string& column);
std::string row_table(const std::string& file, const std::string& dataset);
}  // namespace labels

/// A format of HDF5 files: the labels are AnnData's and 10x's, where the file has them.
class Hdf5Format : public InputFormat {
 public:
  std::vector<std::string> row_names(const std::string& file,
                                     const std::string& dataset) const override {
    return labels::row_names(file, dataset);
  }
  std::vector<std::vector<std::string>> column_names(const std::string& file,
                                                     const std::string& dataset) const override {
    return labels::column_names(file, dataset);
  }
  std::vector<bool> column_flags(const std::string& file, const std::string& dataset,
                                 const std::string& column) const override {
    return labels::column_flags(file, dataset, column);
  }
  std::string row_table(const std::string& file, const std::string& dataset) const override {
    return labels::row_table(file, dataset);
  }
};

/// The format of `dataset` in the existing file at `path`, by its content: a group that holds a
/// compressed sparse matrix is compressed_input(), anything else hdf5_input() (whose probe
/// refuses a file that is not HDF5).
const InputFormat& input_format(const std::string& path, const std::string& dataset);

/// HDF5 files: one 2-D dataset, rows first, and what it reaches into (external links, virtual
/// sources, external raw files), found as HDF5 finds them.
const InputFormat& hdf5_input();

/// Compressed sparse rows in an HDF5 group: AnnData's csr_matrix (data, indices, indptr and the
/// attribute shape) and 10x Genomics' matrix (the same arrays and a dataset shape, compressed
/// by cells: genes x cells read as cells x genes).
const InputFormat& compressed_input();

/// True if `dataset` of the HDF5 file `path` is a group that holds compressed sparse data (or
/// says by its encoding that it is a sparse matrix, which its probe then checks).
bool is_compressed(const std::string& path, const std::string& dataset);

/// Throws Error(data) "FILE: DATASET: WHAT" (no DATASET when empty).
[[noreturn]] void input_error(const std::string& file, const std::string& dataset,
                              const std::string& what);

}  // namespace aetrain
