#include "aetrain/optimizer.hpp"

#include <atomic>
#include <cmath>
#include <stdexcept>

#include "aetrain/parallel.hpp"

namespace aetrain {

template <class S>
Adam<S>::Adam(const AdamConfig& config, size_t n) : config_(config), m_(n, S(0)), v_(n, S(0)) {}

template <class S>
bool Adam<S>::step(std::span<S> params, std::span<const S> grads, S grad_scale) {
  const size_t n = m_.size();
  if (params.size() != n || grads.size() < n) throw std::logic_error("adam: buffer sizes differ");
  ++t_;
  // Bias corrections folded into two scalars, computed once per step in double.
  const double t = double(t_);
  const S step_size = S(config_.learning_rate / (1.0 - std::pow(config_.beta1, t)));
  const S v_scale = S(1.0 / std::sqrt(1.0 - std::pow(config_.beta2, t)));
  const S b1 = S(config_.beta1), b2 = S(config_.beta2), eps = S(config_.epsilon);
  S* p = params.data();
  const S* g = grads.data();
  S* m = m_.data();
  S* v = v_.data();
  // One fused pass; elementwise, so every thread count gives the same bits. The finiteness
  // check rides along: a NaN or infinity in a gradient or a new parameter makes sum(x * 0) NaN.
  std::atomic<bool> finite{true};
  for_slices(int64_t(n), 1, [&](int64_t begin, int64_t end) {
    S poison = 0;
#pragma omp simd reduction(+ : poison)
    for (int64_t i = begin; i < end; ++i) {
      const S gi = g[i] * grad_scale;
      m[i] = b1 * m[i] + (S(1) - b1) * gi;
      v[i] = b2 * v[i] + (S(1) - b2) * gi * gi;
      p[i] -= step_size * m[i] / (std::sqrt(v[i]) * v_scale + eps);
      poison += (gi + p[i]) * S(0);
    }
    if (poison != S(0)) finite = false;
  });
  return finite;
}

template class Adam<float>;
template class Adam<double>;

}  // namespace aetrain
