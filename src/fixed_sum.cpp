#include "aetrain/fixed_sum.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

#include "aetrain/parallel.hpp"

namespace aetrain {
namespace {

// Adding 1.5 * 2^52 rounds a double below 2^51 in magnitude to an integer (to nearest, ties to
// even) held in the low bits of the sum: its bits minus the constant's are that integer.
constexpr double kMagic = 0x1.8p52;
const uint64_t kMagicBits = std::bit_cast<uint64_t>(kMagic);
constexpr uint32_t kInfinityBits = 0x7f800000;  // |x|'s bits at or above this: not finite

// Calls f(chunk, begin, end) on the pieces of elements [begin, end) that share a chunk.
template <class F>
void by_chunk(int64_t begin, int64_t end, F&& f) {
  while (begin < end) {
    const int64_t chunk = begin / FixedSum::kChunk;
    const int64_t stop = std::min(end, (chunk + 1) * FixedSum::kChunk);
    f(chunk, begin, stop);
    begin = stop;
  }
}

}  // namespace

FixedSum::FixedSum(int64_t n, int64_t max_terms) : n_(n), log2_terms_(0) {
  if (n < 0 || max_terms < 1 || max_terms > kMaxTerms)
    throw std::invalid_argument("FixedSum: " + std::to_string(max_terms) +
                                " terms, not within 1 and 2^30");
  while ((int64_t(1) << log2_terms_) < max_terms) ++log2_terms_;
}

void FixedSum::raise_peaks(std::span<const float> x, std::span<uint32_t> peaks) const {
  by_chunk(0, n_, [&](int64_t chunk, int64_t begin, int64_t end) {
    uint32_t peak = peaks[size_t(chunk)];
    for (int64_t i = begin; i < end; ++i)  // vectorized: magnitudes order as their bits
      peak = std::max(peak, std::bit_cast<uint32_t>(x[size_t(i)]) & 0x7fffffffu);
    peaks[size_t(chunk)] = peak;
  });
}

bool FixedSum::finite(std::span<const uint32_t> peaks) {
  return std::all_of(peaks.begin(), peaks.end(), [](uint32_t p) { return p < kInfinityBits; });
}

int FixedSum::unit_exponent(uint32_t peak) const {
  // Every value of the chunk is below 2^e: e is one above the peak's exponent (-126 for a
  // subnormal peak).
  const int biased = int(peak >> 23);
  const int e = biased == 0 ? -126 : biased - 126;
  return e - 62 + log2_terms_;
}

void FixedSum::sum_chunk(std::span<const float* const> terms, int unit, int64_t first,
                         int64_t count, int64_t* __restrict out) {
  // A term times 2^-unit is at most 2^(62 - L): exact in double, rounded to an integer once.
  // By kMagic, in a high part of 2^31 units and the rest (both below 2^31, both rounded to
  // nearest even, which rounds the whole to nearest even: the high part is a multiple of 2^31).
  const int n = int(count);  // at most kChunk (an int index: GCC 12 gathers with int64_t)
  std::fill_n(out, n, int64_t(0));
  const double scale = std::ldexp(1.0, -unit - 31);
  for (const float* term : terms) {
    const float* __restrict x = term + first;
    for (int i = 0; i < n; ++i) {             // vectorized
      const double t = double(x[i]) * scale;  // below 2^31 in magnitude: exact
      const double high = t + kMagic;
      const double rest = (t - (high - kMagic)) * 0x1p31;  // at most 2^30: exact
      const uint64_t a = std::bit_cast<uint64_t>(high) - kMagicBits;
      const uint64_t b = std::bit_cast<uint64_t>(rest + kMagic) - kMagicBits;
      out[i] = int64_t(uint64_t(out[i]) + (a << 31) + b);  // wraps as the signed sum would
    }
  }
}

void FixedSum::convert_chunk(const int64_t* __restrict sums, int unit, int64_t count,
                             float* __restrict out) {
  // float(s) rounds correctly (the hardware's conversion, to nearest even) and scaling it by
  // 2^unit is exact, subnormal results included: a sum of grid values is a multiple of 2^-149
  // (every float is, and a grid finer than 2^-149 rounds no term), so a result below 2^-126
  // has at most 23 significant bits, which float(s) kept exactly.
  const double scale = std::ldexp(1.0, unit);
  for (int64_t i = 0; i < count; ++i)  // vectorized where the CPU converts int64 (AVX-512)
    out[i] = float(double(float(sums[i])) * scale);
}

void FixedSum::sum(std::span<const float* const> terms, std::span<const uint32_t> peaks,
                   int64_t first, std::span<int64_t> out) const {
  for_slices(int64_t(out.size()), 4 * int64_t(terms.size()), [&](int64_t begin, int64_t end) {
    by_chunk(first + begin, first + end, [&](int64_t chunk, int64_t b, int64_t e) {
      sum_chunk(terms, unit_exponent(peaks[size_t(chunk)]), b, e - b, out.data() + (b - first));
    });
  });
}

void FixedSum::to_float(std::span<const int64_t> sums, std::span<const uint32_t> peaks,
                        int64_t first, std::span<float> out) const {
  for_slices(int64_t(out.size()), 8, [&](int64_t begin, int64_t end) {
    by_chunk(first + begin, first + end, [&](int64_t chunk, int64_t b, int64_t e) {
      convert_chunk(sums.data() + (b - first), unit_exponent(peaks[size_t(chunk)]), e - b,
                    out.data() + (b - first));
    });
  });
}

void FixedSum::sum_to_float(std::span<const float* const> terms, std::span<const uint32_t> peaks,
                            std::span<float> out) const {
  for_slices(n_, 4 * int64_t(terms.size()) + 8, [&](int64_t begin, int64_t end) {
    alignas(64) int64_t sums[kChunk];
    by_chunk(begin, end, [&](int64_t chunk, int64_t b, int64_t e) {
      const int unit = unit_exponent(peaks[size_t(chunk)]);
      sum_chunk(terms, unit, b, e - b, sums);
      convert_chunk(sums, unit, e - b, out.data() + b);
    });
  });
}

}  // namespace aetrain
