// The order-invariant sum (fixed_sum.hpp) against an exact reference: each term rounded to the
// 2^-60 grid in long double (exact for a float times 2^60), summed as a 128-bit integer, the
// total correctly rounded to float by a route of its own (a 128-bit integer to float, in steps
// that keep 24 bits and a sticky bit). Adversarial sums: cancellation, the window's ends, ties,
// and the double rounding a naive conversion would make.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "aetrain/fixed_sum.hpp"
#include "aetrain/rng.hpp"

using namespace aetrain;

namespace {

// x rounded to a multiple of 2^-60 (to nearest, ties to even), in units of 2^-60.
__int128 grid_exact(float x) {
  // nearbyint on long double is exact for |scaled| < 2^63; beyond, scaled is an integer already.
  const long double scaled = std::ldexp((long double)x, 60);
  if (std::fabs(scaled) < 0x1p63L) return (__int128)std::nearbyint(scaled);
  const long double high = std::ldexp(std::trunc(std::ldexp(scaled, -40)), 40);
  return ((__int128)(int64_t)std::ldexp(high, -40) << 40) + (__int128)(int64_t)(scaled - high);
}

// v * 2^-60 correctly rounded to float (to nearest, ties to even), by hand.
float to_float_exactly(__int128 v) {
  if (v == 0) return 0.0f;
  const bool negative = v < 0;
  unsigned __int128 m = negative ? -(unsigned __int128)v : (unsigned __int128)v;
  int bits = 0;
  for (unsigned __int128 t = m; t != 0; t >>= 1) ++bits;
  int shift = bits - 24;  // keep 24 significant bits
  uint64_t kept;
  if (shift > 0) {
    const unsigned __int128 rest = m & (((unsigned __int128)1 << shift) - 1);
    const unsigned __int128 half = (unsigned __int128)1 << (shift - 1);
    kept = uint64_t(m >> shift);
    if (rest > half || (rest == half && (kept & 1))) ++kept;  // a carry to 2^24 stays exact
  } else {
    kept = uint64_t(m);
    shift = 0;
  }
  const float f = std::ldexp(float(kept), shift - 60);
  return negative ? -f : f;
}

float fixed_sum_of(const std::vector<float>& terms) {
  FixedSum s(1);
  for (float t : terms) EXPECT_EQ(s.add(std::span<const float>(&t, 1)), 0) << t;
  float out = 0;
  s.to_float(std::span<float>(&out, 1));
  return out;
}

float reference_sum(const std::vector<float>& terms) {
  __int128 total = 0;
  for (float t : terms) total += grid_exact(t);
  return to_float_exactly(total);
}

}  // namespace

TEST(FixedSum, AdversarialSumsAreCorrectlyRounded) {
  const float top = std::nextafter(0x1p31f, 0.0f);  // the largest term the window takes
  const std::vector<std::vector<float>> cases = {
      {1.0f, 2.0f, 3.0f},
      {0x1p30f, 0x1p-50f, -0x1p30f},                  // cancellation leaves the tiny term
      {top, -top, 0x1p-60f},                          // both ends of the window
      {0x1p-61f},                                     // half the grid: a tie, to even (0)
      {0x1.8p-60f},                                   // 1.5 units: a tie, to even (2 units)
      {0x1p-61f, 0x1p-61f},                           // each rounds to 0 on its own
      {1.0f, 0x1p-24f},                               // a float tie: to even, 1
      {1.0f, 0x1p-24f, 0x1p-60f},                     // just above the tie: up (a naive double
                                                      // rounding would give 1)
      {-1.0f, -0x1p-24f, -0x1p-60f},
      {top, top, top, top, -0x1p-40f},                // sums beyond 2^32
      {0.1f, 0.2f, -0.3f},
      {3.0f, -0x1p-30f},
  };
  for (const std::vector<float>& terms : cases) {
    std::vector<float> sorted = terms;
    std::sort(sorted.begin(), sorted.end());
    do {
      EXPECT_EQ(std::bit_cast<uint32_t>(fixed_sum_of(sorted)),
                std::bit_cast<uint32_t>(reference_sum(terms)))
          << "first term " << terms[0] << ", " << terms.size() << " terms";
    } while (std::next_permutation(sorted.begin(), sorted.end()));
  }
  EXPECT_EQ(fixed_sum_of({1.0f, 0x1p-24f, 0x1p-60f}), std::nextafter(1.0f, 2.0f));
  EXPECT_EQ(fixed_sum_of({0x1p-61f}), 0.0f);
  EXPECT_EQ(fixed_sum_of({0x1.8p-60f}), 0x1p-59f);
}

TEST(FixedSum, ManyTermsOfEveryScaleInAnyGroupingGiveTheSameBits) {
  const size_t n = 64, terms = 3000;
  SplitMix64 rng(5);
  std::vector<std::vector<float>> x(terms, std::vector<float>(n));
  for (auto& row : x)
    for (float& v : row)  // magnitudes from 2^-70 to 2^30, both signs
      v = float((rng.uniform() - 0.5) * std::ldexp(1.0, int(rng.below(100)) - 69));
  // One sum in order; another in 7 groups of a shuffled order, the groups added together.
  FixedSum in_order(n), grouped(n);
  for (const auto& row : x) ASSERT_EQ(in_order.add(row), 0);
  std::vector<size_t> order(terms);
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = terms - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  std::vector<FixedSum> groups(7, FixedSum(n));
  for (size_t k = 0; k < terms; ++k) ASSERT_EQ(groups[k % 7].add(x[order[k]]), 0);
  for (const FixedSum& g : groups) grouped.add(g);
  std::vector<float> a(n), b(n);
  in_order.to_float(a);
  grouped.to_float(b);
  for (size_t j = 0; j < n; ++j) {
    std::vector<float> column;
    for (const auto& row : x) column.push_back(row[j]);
    EXPECT_EQ(std::bit_cast<uint32_t>(a[j]), std::bit_cast<uint32_t>(reference_sum(column))) << j;
    EXPECT_EQ(std::bit_cast<uint32_t>(a[j]), std::bit_cast<uint32_t>(b[j])) << j;
  }
}

TEST(FixedSum, TheMostTermsAtTheLargestMagnitudeDoNotOverflow) {
  const float top = std::nextafter(0x1p31f, 0.0f);
  FixedSum s(2);
  const float pair[2] = {top, -top};
  for (int64_t k = 0; k < FixedSum::kMaxTerms; ++k) ASSERT_EQ(s.add(pair), 0);
  float out[2];
  s.to_float(out);
  EXPECT_EQ(out[0], to_float_exactly(grid_exact(top) * FixedSum::kMaxTerms));
  EXPECT_EQ(out[1], -out[0]);
}

TEST(FixedSum, TermsOutsideTheWindowAreCounted) {
  const float inf = std::numeric_limits<float>::infinity();
  const float terms[6] = {0x1p31f, -0x1p31f, inf, -inf, std::nanf(""), 1.0f};
  FixedSum s(6);
  EXPECT_EQ(s.add(terms), 5);
  const float fine[6] = {0x1p30f, -0x1p30f, 1e-30f, -1e-30f, 0.0f, -0.0f};
  FixedSum t(6);
  EXPECT_EQ(t.add(fine), 0);
}
