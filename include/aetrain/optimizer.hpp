// Adam over flat buffers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "aetrain/config.hpp"
#include "aetrain/matrix.hpp"

namespace aetrain {

/// Adam (Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1):
/// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
/// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), with t counting steps from 1.
template <class S>
class Adam {
 public:
  /// Zero moments for `n` parameters.
  Adam(const AdamConfig& config, size_t n);

  /// One update of every parameter with gradient g = grad_scale * grads; bumps step() once.
  /// Returns false if a gradient or a new parameter is NaN or infinite (then they are unusable).
  bool step(std::span<S> params, std::span<const S> grads, S grad_scale);

  const AdamConfig& config() const { return config_; }
  int64_t steps() const { return t_; }
  std::span<S> m() { return m_; }
  std::span<S> v() { return v_; }
  std::span<const S> m() const { return m_; }
  std::span<const S> v() const { return v_; }
  /// Restores the step counter (the moments are written through m() and v()).
  void set_steps(int64_t t) { t_ = t; }

 private:
  AdamConfig config_;
  AlignedVector<S> m_, v_;
  int64_t t_ = 0;
};

}  // namespace aetrain
