// The formats data files come in, below the sources (aetrain/sources.hpp): probe_sources,
// SourceReader and for_each_block reach a file through this interface alone, so that none of
// their callers learns the format. HDF5 (src/hdf5_input.cpp) is the one format today; another
// (h5ad, 10x, netCDF) implements InputFormat and is chosen by input_format(). Private to the
// library.
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
};

/// The format of the existing file at `path`: HDF5 for every file today (its probe refuses a
/// file that is not HDF5).
const InputFormat& input_format(const std::string& path);

/// HDF5 files: one 2-D dataset, rows first, and what it reaches into (external links, virtual
/// sources, external raw files), found as HDF5 finds them.
const InputFormat& hdf5_input();

/// Throws Error(data) "FILE: DATASET: WHAT" (no DATASET when empty).
[[noreturn]] void input_error(const std::string& file, const std::string& dataset,
                              const std::string& what);

}  // namespace aetrain
