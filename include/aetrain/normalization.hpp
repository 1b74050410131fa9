// The per-column scaling a model applies to its input, fitted on the training rows and stored
// with the model, so that every command that uses the model scales its data the same way.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string>

#include "aetrain/config.hpp"
#include "aetrain/matrix.hpp"
#include "aetrain/moments.hpp"

namespace aetrain {

/// x_norm = (x - offset) / scale, per column; the identity for kind none (offset and scale
/// empty).
struct Normalization {
  NormalizeKind kind = NormalizeKind::none;
  int64_t rows = 0;        // rows the statistics were computed from
  Eigen::VectorXd offset;  // (d)
  Eigen::VectorXd scale;   // (d), every entry > 0

  bool identity() const { return kind == NormalizeKind::none; }
};

/// standard: offset = mean, scale = standard deviation (of the population, numpy's std);
/// minmax: offset = min, scale = max - min. A constant column (min = max) gets offset = its
/// value and scale 1: it becomes 0, not a division by zero. `constant`, when given, receives
/// how many columns were constant.
Normalization fit_normalization(NormalizeKind kind, const Moments& m, int64_t* constant = nullptr);

/// "3 of 40 columns are constant: ...": the warning for `constant` constant columns of `cols`.
std::string constant_columns_warning(int64_t constant, int64_t cols, NormalizeKind kind);

/// Throws std::invalid_argument unless the normalization fits d columns: offset and scale of d
/// finite entries, every scale > 0.
void validate(const Normalization& norm, Index d);

/// out (d, n) = (x (d, n) - offset) / scale, computed in double and rounded to float.
void normalize(const Normalization& norm, ConstMatrixMap<double> x, MatrixMap<float> out);
/// out (d, n) = y (d, n) * scale + offset: normalized values back in the data's units.
void denormalize(const Normalization& norm, ConstMatrixMap<float> y, MatrixMap<double> out);
/// The moments of the normalized rows, from those of the rows (exact: the map is affine).
Moments normalized(const Moments& m, const Normalization& norm);

}  // namespace aetrain
