// The matrix types every module uses: column-major, one sample per column.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

namespace aetrain {

using Eigen::Index;

// Column-major throughout: one sample per column, so a row-major N x D block read from HDF5
// is byte-for-byte a D x N matrix here and is never transposed.
template <class S>
using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
template <class S>
using MatrixMap = Eigen::Map<Matrix<S>>;
template <class S>
using ConstMatrixMap = Eigen::Map<const Matrix<S>>;
template <class S>
using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;
template <class S>
using VectorMap = Eigen::Map<Vector<S>>;
template <class S>
using ConstVectorMap = Eigen::Map<const Vector<S>>;

/// A std::vector on Eigen's SIMD alignment. Flat buffers use it so that every run, rank and
/// replica splits vectorized loops at the same places: Eigen handles an unaligned head with
/// scalar code, and a different split can change the last bits of a result.
template <class S>
using AlignedVector = std::vector<S, Eigen::aligned_allocator<S>>;

/// Samples stored sparse, one per column of a (rows, cols) matrix: column j holds value[k] in
/// row index[k] for k in [start[j], start[j + 1]), rows ascending, and zeros elsewhere. The
/// sample is that column minus `shift` (rows entries, zeros included), unless shift is null:
/// a standardization folded in, (x - m) / s = x / s - m / s, keeps the stored part sparse.
/// start[0] need not be 0: a slice of a larger batch shares its arrays.
template <class S>
struct SparseColumns {
  Index rows = 0, cols = 0;
  const int64_t* start = nullptr;  // cols + 1 entries
  const int32_t* index = nullptr;
  const S* value = nullptr;
  const S* shift = nullptr;  // (rows), or null: no shift

  Index nonzeros() const { return cols == 0 ? 0 : Index(start[cols] - start[0]); }
  /// Columns [first, first + count).
  SparseColumns middle_cols(Index first, Index count) const {
    return {rows, count, start + first, index, value, shift};
  }
};

}  // namespace aetrain
