// An order-invariant sum of float vectors (--deterministic): each term is rounded once onto a
// fixed-point grid and added as integers, so the sum is the same whatever the order and grouping
// of its terms: on one rank or many, on any number of threads, through any reduction algorithm
// (Hallberg and Adcroft 2014, "An order-invariant real-to-integer conversion sum").
//
// Each element is two int64 limbs: `high` counts units of 2^-14, `low` units of 2^-60, so the
// grid is 2^-60 and a term must be below 2^31 in magnitude. A term adds at most 2^45 in
// magnitude to each limb, so 2^17 terms (blocks over all ranks) keep every limb and every step
// of the read-back below 2^63: far more than any step has. The sum is read back once, correctly rounded to float.
#pragma once

#include <cstdint>
#include <span>

#include "aetrain/matrix.hpp"

namespace aetrain {

class FixedSum {
 public:
  static constexpr double kLimit = 0x1p31;       // a term's magnitude must be below this
  static constexpr double kResolution = 0x1p-60;  // terms are rounded to multiples of this
  static constexpr int64_t kMaxTerms = int64_t(1) << 17;

  explicit FixedSum(size_t n = 0) { resize(n); }
  void resize(size_t n);
  size_t size() const { return n_; }
  /// Sets every sum to 0.
  void clear();
  /// Adds x (size()) elementwise; returns how many values were not finite or not below kLimit
  /// in magnitude (their elements' sums are then meaningless: the caller must stop).
  int64_t add(std::span<const float> x) { return accumulate(x, false); }
  /// Sets the sums to x: clear() and add(x) in one pass.
  int64_t set(std::span<const float> x) { return accumulate(x, true); }
  /// Adds another sum's limbs (exact; on the OpenMP threads).
  void add(const FixedSum& other);
  /// The two limbs of every element, to be summed elementwise with other FixedSums' (integer
  /// sums, exact in any order).
  std::span<int64_t> high() { return {limbs_.data(), n_}; }
  std::span<int64_t> low() { return {limbs_.data() + n_, n_}; }
  /// The sums, each correctly rounded to float (round to nearest, ties to even), on the OpenMP
  /// threads (each element alone: the same bits on any number).
  void to_float(std::span<float> out) const { to_float(limbs_.data(), limbs_.data() + n_, out); }
  /// The same for limbs held elsewhere (a piece of summed limbs): out.size() elements.
  static void to_float(const int64_t* high, const int64_t* low, std::span<float> out);

 private:
  int64_t accumulate(std::span<const float> x, bool replace);
  // to_float on one thread.
  static void convert(const int64_t* high, const int64_t* low, std::span<float> out);

  size_t n_ = 0;
  AlignedVector<int64_t> limbs_;  // [high of every element..., low of every element...]
};

}  // namespace aetrain
