#include "aetrain/optimizer.hpp"

#include <atomic>
#include <cmath>
#include <stdexcept>

#include "aetrain/parallel.hpp"

namespace aetrain {

template <class S>
Adam<S>::Adam(const AdamConfig& config, size_t n) : config_(config), m_(n, S(0)), v_(n, S(0)) {}

namespace {

// The update of elements [begin, end); false if a gradient or a new parameter is not finite
// (any NaN or infinity makes the sum of x * 0 NaN). A plain function: GCC 12 vectorizes this
// loop here, not inside a lambda.
template <class S>
bool adam_update(int64_t begin, int64_t end, S* p, const S* g, S* m, S* v, S grad_scale,
                 S step_size, S v_scale, S b1, S b2, S eps) {
  S poison = 0;
#pragma omp simd reduction(+ : poison)
  for (int64_t i = begin; i < end; ++i) {
    const S gi = g[i] * grad_scale;
    m[i] = b1 * m[i] + (S(1) - b1) * gi;
    v[i] = b2 * v[i] + (S(1) - b2) * gi * gi;
    p[i] -= step_size * m[i] / (std::sqrt(v[i]) * v_scale + eps);
    poison += (gi + p[i]) * S(0);
  }
  return poison == S(0);
}

}  // namespace

template <class S>
bool Adam<S>::step(std::span<S> params, std::span<const S> grads, S grad_scale) {
  const size_t n = m_.size();
  if (params.size() != n || grads.size() < n) throw std::logic_error("adam: buffer sizes differ");
  ++t_;
  // Bias corrections folded into two scalars, computed once per step in double.
  const double t = double(t_);
  const S step_size = S(config_.learning_rate / (1.0 - std::pow(config_.beta1, t)));
  const S v_scale = S(1.0 / std::sqrt(1.0 - std::pow(config_.beta2, t)));
  // One fused pass; elementwise, so every thread count gives the same bits.
  std::atomic<bool> finite{true};
  for_slices(int64_t(n), 1, [&](int64_t begin, int64_t end) {
    if (!adam_update<S>(begin, end, params.data(), grads.data(), m_.data(), v_.data(), grad_scale,
                        step_size, v_scale, S(config_.beta1), S(config_.beta2),
                        S(config_.epsilon)))
      finite = false;
  });
  return finite;
}

template class Adam<float>;
template class Adam<double>;

}  // namespace aetrain
