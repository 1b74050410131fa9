// The one way elementwise work is split over OpenMP threads.
#pragma once

#include <omp.h>

#include <cstdint>

namespace aetrain {

/// Calls f(begin, end) on contiguous slices of [0, n), one per OpenMP thread, or once on this
/// thread when the work (n * cost_per_item) is too small to pay for a parallel region. The
/// one-thread path opens no region at all: libgomp allocates a team for every 1-thread region.
template <class F>
void for_slices(int64_t n, int64_t cost_per_item, F&& f) {
  constexpr int64_t kMinWork = int64_t(1) << 16;
  const int threads = n * cost_per_item < kMinWork ? 1 : omp_get_max_threads();
  if (threads == 1) {
    if (n > 0) f(int64_t(0), n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (end > begin) f(begin, end);
  }
}

}  // namespace aetrain
