#include "aetrain/optimizer.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>

#include "aetrain/parallel.hpp"

namespace aetrain {

template <class S>
Adam<S>::Adam(const AdamConfig& config, size_t n, double weight_decay,
              const std::vector<ParamRange>& decayed)
    : config_(config), weight_decay_(weight_decay), m_(n, S(0)), v_(n, S(0)) {
  size_t at = 0;
  if (weight_decay > 0)
    for (const ParamRange& r : decayed) {
      if (r.begin < at || r.end < r.begin || r.end > n)
        throw std::logic_error("adam: decayed ranges must be sorted, disjoint and inside");
      if (r.begin > at) segments_.push_back({at, r.begin, false});
      if (r.end > r.begin) segments_.push_back({r.begin, r.end, true});
      at = r.end;
    }
  if (at < n || segments_.empty()) segments_.push_back({at, n, false});
}

namespace {

// The update of elements [begin, end); false if a gradient or a new parameter is not finite
// (any NaN or infinity makes the sum of x * 0 NaN). A plain function: GCC 12 vectorizes this
// loop here, not inside a lambda.
// `keep` is 1 - lr * weight decay, or 1 where nothing decays (p * 1 is p, bit for bit).
template <class S>
bool adam_update(int64_t begin, int64_t end, S* p, const S* g, S* m, S* v, S grad_scale,
                 S step_size, S v_scale, S b1, S b2, S eps, S keep) {
  S poison = 0;
#pragma omp simd reduction(+ : poison)
  for (int64_t i = begin; i < end; ++i) {
    const S gi = g[i] * grad_scale;
    m[i] = b1 * m[i] + (S(1) - b1) * gi;
    v[i] = b2 * v[i] + (S(1) - b2) * gi * gi;
    p[i] = p[i] * keep - step_size * m[i] / (std::sqrt(v[i]) * v_scale + eps);
    poison += (gi + p[i]) * S(0);
  }
  return poison == S(0);
}

}  // namespace

template <class S>
bool Adam<S>::step(std::span<S> params, std::span<const S> grads, S grad_scale, double lr) {
  const size_t n = m_.size();
  if (params.size() != n || grads.size() < n) throw std::logic_error("adam: buffer sizes differ");
  ++t_;
  // Bias corrections folded into two scalars, computed once per step in double.
  const double t = double(t_);
  const S step_size = S(lr / (1.0 - std::pow(config_.beta1, t)));
  const S v_scale = S(1.0 / std::sqrt(1.0 - std::pow(config_.beta2, t)));
  const S keep = S(1.0 - lr * weight_decay_);
  // One fused pass; elementwise, so every thread count gives the same bits.
  std::atomic<bool> finite{true};
  for_slices(int64_t(n), 1, [&](int64_t begin, int64_t end) {
    for (const Segment& s : segments_) {
      const int64_t lo = std::max(begin, int64_t(s.begin)), hi = std::min(end, int64_t(s.end));
      if (lo < hi && !adam_update<S>(lo, hi, params.data(), grads.data(), m_.data(), v_.data(),
                                     grad_scale, step_size, v_scale, S(config_.beta1),
                                     S(config_.beta2), S(config_.epsilon), s.decays ? keep : S(1)))
        finite = false;
    }
  });
  return finite;
}

template <class S>
double l2_norm(std::span<const S> x) {
  // A fixed number of chunks, each summed in order, then the chunks in order: the chunks, not
  // the threads, decide the bits (and a step allocates nothing).
  constexpr int64_t kChunks = 64;
  const int64_t n = int64_t(x.size());
  double partial[kChunks] = {};
  for_slices(kChunks, std::max<int64_t>(1, n / kChunks), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double sum = 0;
      for (int64_t i = n * c / kChunks, end = n * (c + 1) / kChunks; i < end; ++i)
        sum += double(x[size_t(i)]) * double(x[size_t(i)]);
      partial[c] = sum;
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return std::sqrt(total);
}

template class Adam<float>;
template class Adam<double>;
template double l2_norm<float>(std::span<const float>);
template double l2_norm<double>(std::span<const double>);

}  // namespace aetrain
