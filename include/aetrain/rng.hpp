// Portable random numbers: the same sequence from every compiler and standard library.
// (std::uniform_int_distribution and std::shuffle differ between libraries.)
#pragma once

#include <cstdint>

namespace aetrain {

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t state) : state_(state) {}
  /// The next 64 random bits.
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n), unbiased (rejection of the short last interval); n >= 1.
  uint64_t below(uint64_t n) {
    const uint64_t limit = -n % n;  // 2^64 mod n: draws below it would favour small values
    uint64_t r;
    do r = next();
    while (r < limit);
    return r % n;
  }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

/// A stream seed derived from a user seed and two stream coordinates (e.g. epoch and class).
inline uint64_t stream_seed(uint64_t seed, uint64_t a, uint64_t b) {
  SplitMix64 g(seed);
  SplitMix64 h(g.next() ^ (a * 0xd1b54a32d192ed03ULL));
  SplitMix64 k(h.next() ^ (b * 0xaef17502108ef2d9ULL));
  return k.next();
}

}  // namespace aetrain
