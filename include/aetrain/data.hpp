// HDF5 data out, written by every rank in parallel, and what a pass over the data in blocks
// gives (its moments). Reading is sources.hpp's; the training rows are training_data.hpp's.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/matrix.hpp"
#include "aetrain/moments.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/sources.hpp"

namespace aetrain {

/// The HDF5 library, e.g. "1.10.8 (parallel)".
std::string hdf5_library_version();

/// Closes every HDF5 object still open and shuts HDF5 down: call it at the end, before MPI ends
/// (MPI_Finalize would do it otherwise, with nobody left to hear of a failure). False when HDF5
/// holds a file it failed to close, whose shutdown would crash (h5::close_library): the process
/// must then end without MPI_Finalize (Comm::abort).
bool close_io();

/// A new float32 (or float64) dataset of `dims` (rows first) that every rank of comm writes its
/// own rows of, through MPI-IO, into a file that check_outputs has allowed (nothing there, an
/// empty file, or an HDF5 file that takes datasets). It appears under its final name only when
/// complete: a new file is written as FILE.tmp and renamed, an existing file gets the dataset as
/// NAME.partial, renamed at the end. An existing dataset is replaced only with `overwrite` (else
/// Error(usage)), and only then. The disk space it needs is reserved before HDF5 writes a byte,
/// so a full disk is Error(write_failed) naming the file, `what` ("the codes") and the system's
/// reason, with nothing left behind. Collective to create, commit and destroy.
class RowWriter {
 public:
  RowWriter(const std::string& file, const std::string& dataset, std::vector<int64_t> dims,
            bool overwrite, const Comm& comm, Precision precision = Precision::float32,
            const std::string& what = "the rows");
  /// Without commit(), removes what it wrote. Every HDF5 object of the file is closed.
  ~RowWriter();
  /// Writes rows [first, first + n), row-major. Independent.
  void write(int64_t first, int64_t n, const float* values);
  void write(int64_t first, int64_t n, const double* values);
  /// An attribute on the dataset: every rank passes the same value. Collective.
  void attribute(const std::string& name, const std::string& value);
  void attribute(const std::string& name, int64_t value);
  /// The table of the files the rows came from (file, dataset, first_row, rows), written beside
  /// the dataset as NAME_sources and named by its attribute `sources`. Collective.
  void sources(const std::vector<SourceEntry>& entries);
  /// Makes the dataset (and a new file) visible under their final names. Collective.
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The column moments of every row of `sources` (kind: Scatter::full for a PCA), each rank
/// reading its even share in blocks of `block_rows` rows, in double. The same on every rank.
/// Collective; read errors are agreed.
Moments dataset_moments(const Sources& sources, Scatter kind, int64_t block_rows, const Comm& comm);

}  // namespace aetrain
