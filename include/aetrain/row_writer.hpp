// Rows out: an HDF5 dataset written by every rank in parallel through MPI-IO (encode's codes,
// evaluate's per-sample losses and reconstructions). Reading is sources.hpp's.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/sources.hpp"

namespace aetrain {

/// A new float32 (or float64) dataset of `dims` (rows first) that every rank of comm writes its
/// own rows of, through MPI-IO, into a file that check_outputs has allowed (nothing there, an
/// empty file, or an HDF5 file that takes datasets). It appears under its final name only when
/// complete: a new file is written as FILE.tmp and renamed, an existing file gets the dataset as
/// NAME.partial, renamed at the end. An existing dataset is replaced only with `overwrite` (else
/// Error(usage)), and only then. The disk space it needs is reserved before HDF5 writes a byte,
/// so a full disk is Error(write_failed) naming the file, `what` ("the codes") and the system's
/// reason, with nothing left behind. Collective to create, commit and destroy.
/// An AnnData file around the rows (an .h5ad --out), which anndata.read_h5ad opens: the rows
/// are an obsm entry (dataset "/obsm/KEY") of a file whose obs is the input's (copied from a
/// single AnnData input) or a table of the rows' names alone, with an empty var.
struct AnnDataFrame {
  std::vector<std::string> obs_names;  // one per row (rank 0's; other ranks may leave it empty)
  std::string obs_file, obs_group;     // the obs to copy; "" for a table of obs_names
};

class RowWriter {
 public:
  /// With `frame`, a new file is an AnnData file (AnnDataFrame), and an existing one must be
  /// an AnnData file of as many rows (else Error(usage)).
  RowWriter(const std::string& file, const std::string& dataset, std::vector<int64_t> dims,
            bool overwrite, const Comm& comm, Precision precision = Precision::float32,
            const std::string& what = "the rows", const AnnDataFrame* frame = nullptr);
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

}  // namespace aetrain
