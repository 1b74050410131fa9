// The matrix types every module uses: column-major, one sample per column.
#pragma once

#include <Eigen/Core>
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

}  // namespace aetrain
