// The order-invariant sum (fixed_sum.hpp) against an exact reference of its own: each chunk's
// grid worked out here from the largest term (frexp), each term rounded to it in long double
// (exact: a float times a power of two, below 2^63), summed as a 128-bit integer, the total
// correctly rounded to float by hand (24 bits kept, or fewer where the result is subnormal,
// rounded to nearest even). Adversarial sums: cancellation, terms below the grid, ties of the
// grid and of float, subnormal results, the most terms at the largest magnitude (no overflow,
// float's infinity), NaN and infinities in the peaks, chunks with grids of their own.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "aetrain/fixed_sum.hpp"
#include "aetrain/rng.hpp"

using namespace aetrain;

namespace {

int log2_ceil(int64_t terms) {
  int l = 0;
  while ((int64_t(1) << l) < terms) ++l;
  return l;
}

// The grid of a chunk whose largest magnitude is `peak`, for sums of up to `terms` terms: 2^u,
// u = e - 62 + ceil(log2 terms), with every magnitude below 2^e (and e at least -126).
int grid_exponent(float peak, int64_t terms) {
  int e = 0;
  std::frexp(peak, &e);  // peak = m 2^e, m in [0.5, 1): peak < 2^e
  return std::max(e, -126) - 62 + log2_ceil(terms);
}

// v * 2^u correctly rounded to float (to nearest, ties to even), by hand.
float to_float_exactly(__int128 v, int u) {
  if (v == 0) return 0.0f;
  const bool negative = v < 0;
  unsigned __int128 m = negative ? -(unsigned __int128)v : (unsigned __int128)v;
  int bits = 0;
  for (unsigned __int128 t = m; t != 0; t >>= 1) ++bits;
  // Keep 24 significant bits, or fewer so that the last one is worth at least 2^-149.
  int shift = std::max(bits - 24, -149 - u);
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
  const float f = std::ldexp(float(kept), shift + u);  // infinity beyond float's range
  return negative ? -f : f;
}

// The exact reference of one element's sum.
float reference_sum(const std::vector<float>& terms, int64_t max_terms) {
  float peak = 0;
  for (float t : terms) peak = std::max(peak, std::fabs(t));
  const int u = grid_exponent(peak, max_terms);
  __int128 total = 0;
  for (float t : terms) total += (__int128)(int64_t)std::nearbyint(std::ldexp((long double)t, -u));
  return to_float_exactly(total, u);
}

uint32_t bits(float x) { return std::bit_cast<uint32_t>(x); }

// The one-element sum of `terms` by FixedSum, both ways: in one pass, and as integer sums of
// one term each added here and converted.
float fixed_sum_of(const std::vector<float>& terms) {
  const FixedSum s(1, int64_t(terms.size()));
  uint32_t peak = 0;
  for (const float& t : terms) s.raise_peaks(std::span<const float>(&t, 1), {&peak, 1});
  EXPECT_TRUE(FixedSum::finite({&peak, 1}));
  std::vector<const float*> pointers;
  for (const float& t : terms) pointers.push_back(&t);
  float once = 0;
  s.sum_to_float(pointers, {&peak, 1}, {&once, 1});
  int64_t total = 0;
  for (const float* p : pointers) {
    int64_t one = 0;
    s.sum({&p, 1}, {&peak, 1}, 0, {&one, 1});
    total += one;
  }
  float added = 0;
  s.to_float({&total, 1}, {&peak, 1}, 0, {&added, 1});
  EXPECT_EQ(bits(once), bits(added));
  return once;
}

}  // namespace

TEST(FixedSum, AdversarialSumsAreCorrectlyRounded) {
  const std::vector<std::vector<float>> cases = {
      {1.0f, 2.0f, 3.0f},
      {0x1p30f, 0x1p-20f, -0x1p30f},    // cancellation leaves the small term (on the grid)
      {0x1p30f, 0x1p-40f, -0x1p30f},    // a term below the grid (2^-29 here): rounded to 0
      {0x1p30f, 0x1p-29f, -0x1p30f},    // one grid unit: kept
      {0x1p30f, 0x1p-30f, -0x1p30f},    // half a unit: a tie, to even (0)
      {0x1p30f, 0x1.8p-29f, -0x1p30f},  // 1.5 units: a tie, to even (2 units)
      {1.0f, 0x1p-61f},                 // half the grid (2^-60): a tie, to even (0)
      {1.0f, 0x1.8p-60f},               // 1.5 units: a tie, to even (2 units)
      {1.0f, 0x1p-24f},                 // a float tie: to even, 1
      {1.0f, 0x1p-24f, 0x1p-58f},       // just above the tie: up
      {-1.0f, -0x1p-24f, -0x1p-58f},
      {0x1.000002p-126f, -0x1p-126f},     // a subnormal result: 2^-149
      {0x1p-149f, 0x1p-149f, 0x1p-148f},  // subnormal terms
      {FLT_MAX, FLT_MAX},                 // beyond float: infinity
      {FLT_MAX, -FLT_MAX, 1e30f},
      {0.1f, 0.2f, -0.3f},
      {3.0f, -0x1p-30f},
      {0.0f, -0.0f},
  };
  for (const std::vector<float>& terms : cases) {
    std::vector<float> sorted = terms;
    std::sort(sorted.begin(), sorted.end());
    do {
      EXPECT_EQ(bits(fixed_sum_of(sorted)), bits(reference_sum(terms, int64_t(terms.size()))))
          << "first term " << terms[0] << ", " << terms.size() << " terms";
    } while (std::next_permutation(sorted.begin(), sorted.end()));
  }
  // The reference's own figures, worked by hand.
  EXPECT_EQ(fixed_sum_of({0x1p30f, 0x1p-20f, -0x1p30f}), 0x1p-20f);
  EXPECT_EQ(fixed_sum_of({0x1p30f, 0x1p-40f, -0x1p30f}), 0.0f);
  EXPECT_EQ(fixed_sum_of({0x1p30f, 0x1p-29f, -0x1p30f}), 0x1p-29f);
  EXPECT_EQ(fixed_sum_of({0x1p30f, 0x1p-30f, -0x1p30f}), 0.0f);
  EXPECT_EQ(fixed_sum_of({0x1p30f, 0x1.8p-29f, -0x1p30f}), 0x1p-28f);
  EXPECT_EQ(fixed_sum_of({1.0f, 0x1p-24f}), 1.0f);
  EXPECT_EQ(fixed_sum_of({1.0f, 0x1p-24f, 0x1p-58f}), std::nextafter(1.0f, 2.0f));
  EXPECT_EQ(fixed_sum_of({1.0f, 0x1.8p-60f}), 1.0f);
  EXPECT_EQ(fixed_sum_of({0x1.000002p-126f, -0x1p-126f}), 0x1p-149f);
  EXPECT_EQ(fixed_sum_of({FLT_MAX, FLT_MAX}), std::numeric_limits<float>::infinity());
}

TEST(FixedSum, ManyTermsOfEveryScaleInAnyGroupingGiveTheSameBits) {
  const int64_t n = 1300, terms = 3000;  // three chunks, the last one short
  SplitMix64 rng(5);
  std::vector<std::vector<float>> x(terms, std::vector<float>(n));
  for (auto& row : x)
    for (float& v : row)  // magnitudes from 2^-70 to 2^30, both signs
      v = float((rng.uniform() - 0.5) * std::ldexp(1.0, int(rng.below(100)) - 69));
  const FixedSum s(n, terms);
  ASSERT_EQ(s.chunks(), 3);
  // The peaks, raised in order; all terms summed in one pass.
  std::vector<uint32_t> peaks(3, 0);
  std::vector<const float*> all;
  for (const auto& row : x) {
    s.raise_peaks(row, peaks);
    all.push_back(row.data());
  }
  std::vector<float> once(size_t(n), 0.0f);
  s.sum_to_float(all, peaks, once);
  // The same in 7 groups of a shuffled order, each group's peaks and integer sums made alone
  // and then combined (max, +), the sums taken from element 100 on (a slice across chunks).
  std::vector<size_t> order(static_cast<size_t>(terms));
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = size_t(terms) - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  std::vector<std::vector<const float*>> groups(7);
  for (size_t k = 0; k < order.size(); ++k) groups[k % 7].push_back(x[order[k]].data());
  std::vector<uint32_t> agreed(3, 0);
  for (const auto& g : groups) {
    std::vector<uint32_t> own(3, 0);
    for (const float* p : g) s.raise_peaks({p, size_t(n)}, own);
    for (size_t c = 0; c < 3; ++c) agreed[c] = std::max(agreed[c], own[c]);
  }
  EXPECT_EQ(agreed, peaks);
  const int64_t first = 100;
  std::vector<int64_t> total(size_t(n - first), 0), part(total.size());
  for (const auto& g : groups) {
    s.sum(g, agreed, first, part);
    for (size_t j = 0; j < total.size(); ++j) total[j] += part[j];
  }
  std::vector<float> grouped(total.size());
  s.to_float(total, agreed, first, grouped);
  for (int64_t j = 0; j < n; ++j) {
    std::vector<float> column;
    for (const auto& row : x) column.push_back(row[size_t(j)]);
    ASSERT_EQ(bits(once[size_t(j)]), bits(reference_sum(column, terms))) << j;
    if (j >= first) {
      ASSERT_EQ(bits(once[size_t(j)]), bits(grouped[size_t(j - first)])) << j;
    }
  }
}

TEST(FixedSum, EachChunkHasAGridOfItsOwn) {
  // A large value in chunk 0 leaves chunk 1's small values exact.
  const int64_t n = 2 * FixedSum::kChunk;
  const size_t c1 = size_t(FixedSum::kChunk);
  std::vector<float> a(size_t(n), 0.0f), b(size_t(n), 0.0f);
  a[0] = 0x1p30f;
  b[0] = 0x1p-40f;  // below chunk 0's grid (2^-30 for two terms): lost
  a[c1] = 0x1p-35f;
  b[c1] = 0x1p-58f;  // on chunk 1's grid (2^-95), as is the sum (float holds it exactly)
  const FixedSum s(n, 2);
  std::vector<uint32_t> peaks(2, 0);
  s.raise_peaks(a, peaks);
  s.raise_peaks(b, peaks);
  std::vector<float> out(static_cast<size_t>(n));
  const float* terms[2] = {a.data(), b.data()};
  s.sum_to_float(terms, peaks, out);
  EXPECT_EQ(out[0], 0x1p30f);
  EXPECT_EQ(out[c1], 0x1.000002p-35f);
}

TEST(FixedSum, TheMostTermsAtTheLargestMagnitudeDoNotOverflow) {
  // 2^20 terms at the chunk's peak, both signs: every partial sum stays within int64.
  const int64_t terms = int64_t(1) << 20;
  for (const float top : {0x1.fffffep1f, 0x1.fffffep127f, 0x1p-149f}) {
    const float pair[2] = {top, -top};
    const FixedSum s(2, terms);
    uint32_t peak = 0;
    s.raise_peaks(pair, {&peak, 1});
    const std::vector<const float*> all(size_t(terms), pair);
    float out[2];
    s.sum_to_float(all, {&peak, 1}, out);
    const int u = grid_exponent(top, terms);
    const float expected =
        to_float_exactly((__int128)std::nearbyint(std::ldexp((long double)top, -u)) * terms, u);
    EXPECT_EQ(bits(out[0]), bits(expected)) << top;
    EXPECT_EQ(bits(out[1]), bits(-expected)) << top;
  }
  EXPECT_THROW(FixedSum(1, FixedSum::kMaxTerms + 1), std::invalid_argument);
  EXPECT_THROW(FixedSum(1, 0), std::invalid_argument);
}

TEST(FixedSum, NaNAndInfinityShowInThePeaks) {
  const float inf = std::numeric_limits<float>::infinity();
  const FixedSum s(3, 4);
  for (const float bad : {inf, -inf, std::nanf(""), -std::nanf("")}) {
    const float x[3] = {1.0f, bad, FLT_MAX};
    uint32_t peak = 0;
    s.raise_peaks(x, {&peak, 1});
    EXPECT_FALSE(FixedSum::finite({&peak, 1})) << bad;
  }
  const float fine[3] = {FLT_MAX, -FLT_MAX, 0x1p-149f};
  uint32_t peak = 0;
  s.raise_peaks(fine, {&peak, 1});
  EXPECT_TRUE(FixedSum::finite({&peak, 1}));
}
