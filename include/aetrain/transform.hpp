// What count data goes through before a model sees it (--size-factor, --transform, --features):
// each row scaled to a total, log1p, a subset of the columns kept. Fitted to the data's columns
// when the data is probed (sources.hpp), stored with the model, and applied the same way by
// every command that reads rows for it. No file format lives here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "aetrain/config.hpp"
#include "aetrain/matrix.hpp"

namespace aetrain {

/// A CountTransform fitted to the stored columns of a dataset.
struct RowTransform {
  CountTransform asked;            // as the options gave it
  int64_t stored_cols = 0;         // the columns the data stores
  std::vector<int64_t> columns;    // the stored columns kept, ascending; empty: every one
  std::vector<std::string> names;  // their names, when the data names its columns
  bool identity() const {
    return asked.size_factor == 0 && asked.scale == CountScale::none && columns.empty();
  }
  /// The columns a model sees.
  int64_t cols() const { return columns.empty() ? stored_cols : int64_t(columns.size()); }
  bool operator==(const RowTransform&) const = default;
};

/// A transform as asked for, to be fitted to the data's columns (probe_sources).
inline RowTransform asked_for(const CountTransform& c) {
  RowTransform t;
  t.asked = c;
  return t;
}

/// Where apply() stopped, and what it counted.
struct TransformCheck {
  int64_t bad_row = -1, bad_col = -1;  // the first negative value: counts cannot be negative
  int64_t zero_total = 0;              // rows of total 0 under a size factor (left as zeros)
};

/// out (t.cols(), n) = the rows x (t.stored_cols, n) transformed: each scaled by
/// size_factor / its total over every stored column, then log1p, then the kept columns, in
/// double. A negative value under a size factor or log1p stops it (bad_row, bad_col).
TransformCheck apply(const RowTransform& t, ConstMatrixMap<double> x, MatrixMap<double> out);

/// "size factor 10000, log1p, 2000 of 33538 columns (var:highly_variable)"; "none".
std::string describe(const RowTransform& t);

}  // namespace aetrain
