#include "aetrain/fixed_sum.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <utility>

#include "aetrain/parallel.hpp"

namespace aetrain {
namespace {

// Adding 1.5 * 2^52 rounds a double below 2^51 in magnitude to an integer (to nearest, ties to
// even) held in the low bits of the sum: its bits minus the constant's are that integer.
constexpr double kMagic = 0x1.8p52;
const uint64_t kMagicBits = std::bit_cast<uint64_t>(kMagic);

}  // namespace

void FixedSum::resize(size_t n) {
  n_ = n;
  limbs_.assign(2 * n, 0);
}

void FixedSum::clear() { std::fill(limbs_.begin(), limbs_.end(), 0); }

int64_t FixedSum::accumulate(std::span<const float> x, bool replace) {
  const size_t n = n_;  // a local bound and unaliased pointers: the loop vectorizes
  int64_t* __restrict high = limbs_.data();
  int64_t* __restrict low = high + n;
  const float* __restrict in = x.data();
  const uint64_t keep = replace ? 0 : ~uint64_t(0);  // the old limbs, or none
  int64_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const double v = double(in[i]);
    bad += !(std::fabs(v) < kLimit);  // NaN too
    const double scaled = v * 0x1p14;  // in units of 2^-14: below 2^45, exact
    const double t = scaled + kMagic;
    const double rest = (scaled - (t - kMagic)) * 0x1p46;  // units of 2^-60, at most 2^45: exact
    const double u = rest + kMagic;                         // rounded to the grid here, once
    // Unsigned adds: a bad term's bits must not be undefined behaviour (the sum is refused).
    high[i] = int64_t((uint64_t(high[i]) & keep) + (std::bit_cast<uint64_t>(t) - kMagicBits));
    low[i] = int64_t((uint64_t(low[i]) & keep) + (std::bit_cast<uint64_t>(u) - kMagicBits));
  }
  return bad;
}

void FixedSum::add(const FixedSum& other) {
  for_slices(int64_t(limbs_.size()), 2, [&](int64_t begin, int64_t end) {
    int64_t* __restrict to = limbs_.data();
    const int64_t* __restrict from = other.limbs_.data();
    for (int64_t i = begin; i < end; ++i) to[i] = int64_t(uint64_t(to[i]) + uint64_t(from[i]));
  });
}

void FixedSum::to_float(const int64_t* high, const int64_t* low, std::span<float> out) {
  for_slices(int64_t(out.size()), 8, [&](int64_t begin, int64_t end) {
    convert(high + begin, low + begin, out.subspan(size_t(begin), size_t(end - begin)));
  });
}

void FixedSum::convert(const int64_t* __restrict high, const int64_t* __restrict low,
                       std::span<float> out) {
  const size_t n = out.size();
  float* __restrict result = out.data();
  // The limbs of element i with the low one's excess carried: low in [-2^45, 2^45).
  const auto carried = [&](size_t i) {
    const int64_t carry = (low[i] + (int64_t(1) << 45)) >> 46;
    return std::pair<int64_t, int64_t>(high[i] + carry, low[i] - carry * (int64_t(1) << 46));
  };
  constexpr int64_t kFast = int64_t(1) << 51;  // |high| below this converts through kMagic
  // h * 2^-14 + l * 2^-60 rounded to double, then to float: correct unless the double lies
  // exactly halfway between two floats (its low 29 bits 1000...0) and was rounded there (a
  // rounding error by TwoSum), or h is too large for the magic constant; both are rare (about
  // 2^-29 of the inexact sums) and marked for the exact pass below.
  int64_t marked = 0;
  for (size_t i = 0; i < n; ++i) {  // vectorized
    const auto [h, l] = carried(i);
    const double a = (std::bit_cast<double>(kMagicBits + uint64_t(h)) - kMagic) * 0x1p-14;
    const double b = (std::bit_cast<double>(kMagicBits + uint64_t(l)) - kMagic) * 0x1p-60;
    const double sum = a + b;
    const double bv = sum - a;
    const double err = (a - (sum - bv)) + (b - bv);  // TwoSum: the rounding error of sum
    marked += (((std::bit_cast<uint64_t>(sum) & 0x1fffffff) == 0x10000000) & (err != 0)) |
              (uint64_t(h) + uint64_t(kFast) >= uint64_t(2 * kFast));
    result[i] = float(sum);
  }
  if (marked == 0) return;
  for (size_t i = 0; i < n; ++i) {
    const auto [h, l] = carried(i);
    if (h >= kFast || h <= -kFast) {  // a sum beyond 2^37: through 128 bits
      result[i] = float((__int128(h) << 46) + l) * float(kResolution);  // libgcc rounds correctly
      continue;
    }
    const double a = double(h) * 0x1p-14, b = double(l) * 0x1p-60;  // both exact
    const double sum = a + b;
    if ((std::bit_cast<uint64_t>(sum) & 0x1fffffff) != 0x10000000) continue;
    // Rounded to odd instead (the error by TwoSum decides the side), then to float: rounding to
    // odd with 29 bits to spare makes the second rounding correct.
    const double bv = sum - a;
    const double err = (a - (sum - bv)) + (b - bv);
    if (err == 0) continue;  // a true tie: float() breaks it to even, as it should
    const uint64_t bits = std::bit_cast<uint64_t>(sum) + ((err > 0) == (sum > 0) ? 1 : -1);
    result[i] = float(std::bit_cast<double>(bits));
  }
}

}  // namespace aetrain
