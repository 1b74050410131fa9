// An order-invariant sum of float vectors (--deterministic): each term is rounded once onto a
// fixed-point grid and the rounded terms are added as integers, so the sum is the same whatever
// the order and grouping of its terms: on one rank or many, on any number of threads, through
// any reduction algorithm (Hallberg and Adcroft 2014, "An order-invariant real-to-integer
// conversion sum"). The grid is not fixed in advance but set, as in Demmel and Nguyen's
// pre-rounding (2013, "Fast reproducible floating-point summation"), by the largest magnitude
// among the terms, agreed by every rank before the terms are rounded:
//
// - The elements are cut into chunks of kChunk. Each term raises its chunks' peaks (the
//   largest |value|, as float bits, which order magnitudes as unsigned integers); the peaks
//   are combined by max over threads and ranks, so every rank holds the same.
// - A chunk whose peak is below 2^e gets the grid 2^(e - 62 + L), L = ceil(log2(max_terms)):
//   a term is then at most 2^(62 - L) grid units and a sum of up to max_terms terms at most
//   2^62, so one int64 per element holds any partial sum, and no overflow can occur. A term
//   loses at most half a unit, 2^-(62 - L) of its chunk's peak (2^-60 for 4 terms).
// - The sum is read back once, correctly rounded to float (to nearest, ties to even).
//
// A NaN or infinite term shows in the peaks (finite() is false): the caller must stop.
#pragma once

#include <cstdint>
#include <span>

namespace aetrain {

class FixedSum {
 public:
  static constexpr int64_t kChunk = 512;  // elements sharing one grid
  static constexpr int64_t kMaxTerms = int64_t(1) << 30;

  /// Sums of at most `max_terms` (1 to kMaxTerms) vectors of n elements.
  FixedSum(int64_t n, int64_t max_terms);
  int64_t chunks() const { return (n_ + kChunk - 1) / kChunk; }

  /// Raises peaks[c] (chunks() of them) to the largest magnitude in chunk c of x (n elements).
  void raise_peaks(std::span<const float> x, std::span<uint32_t> peaks) const;
  /// Whether no peak is a NaN or infinite.
  static bool finite(std::span<const uint32_t> peaks);

  /// out = the sums of elements [first, first + out.size()) of the terms (each pointing at
  /// element 0 of an n-element vector), in grid units of the chunks' agreed peaks: integers to
  /// be summed with other ranks' (exact in any order). On the OpenMP threads.
  void sum(std::span<const float* const> terms, std::span<const uint32_t> peaks, int64_t first,
           std::span<int64_t> out) const;
  /// out = elements [first, first + out.size()) of summed grid units, correctly rounded to
  /// float. On the OpenMP threads (each element alone: the same bits on any number).
  void to_float(std::span<const int64_t> sums, std::span<const uint32_t> peaks, int64_t first,
                std::span<float> out) const;
  /// to_float(sum(terms)) of all n elements in one pass, for sums that need no other rank's.
  void sum_to_float(std::span<const float* const> terms, std::span<const uint32_t> peaks,
                    std::span<float> out) const;

 private:
  // The grid of a chunk with this peak: 2^unit_exponent, and 2^-unit_exponent to scale by.
  int unit_exponent(uint32_t peak) const;
  // out[i] = sum over terms of element first + i in grid units 2^unit (one chunk at most).
  static void sum_chunk(std::span<const float* const> terms, int unit, int64_t first, int64_t count,
                        int64_t* out);
  static void convert_chunk(const int64_t* sums, int unit, int64_t count, float* out);

  int64_t n_;
  int log2_terms_;
};

}  // namespace aetrain
