// Adam over flat buffers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "aetrain/config.hpp"
#include "aetrain/matrix.hpp"

namespace aetrain {

/// A range [begin, end) of the flat parameter buffer.
struct ParamRange {
  size_t begin = 0, end = 0;
};

/// Adam (Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1):
/// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
/// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), with t counting steps from 1;
/// with decoupled weight decay wd on the `decayed` ranges first, p -= lr * wd * p (AdamW:
/// Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, as
/// torch.optim.AdamW applies it).
template <class S>
class Adam {
 public:
  /// Zero moments for `n` parameters; weight decay `weight_decay` on the `decayed` ranges
  /// (sorted, disjoint: the kernels), none elsewhere.
  Adam(const AdamConfig& config, size_t n, double weight_decay = 0.0,
       const std::vector<ParamRange>& decayed = {});

  /// One update of every parameter with gradient g = grad_scale * grads and learning rate `lr`
  /// (the schedule's, for this step); bumps step() once. Returns false if a gradient or a new
  /// parameter is NaN or infinite (then they are unusable).
  bool step(std::span<S> params, std::span<const S> grads, S grad_scale, double lr);

  const AdamConfig& config() const { return config_; }
  int64_t steps() const { return t_; }
  std::span<S> m() { return m_; }
  std::span<S> v() { return v_; }
  std::span<const S> m() const { return m_; }
  std::span<const S> v() const { return v_; }
  /// Restores the step counter (the moments are written through m() and v()).
  void set_steps(int64_t t) { t_ = t; }

 private:
  // The buffer cut into consecutive runs that do or do not decay.
  struct Segment {
    size_t begin, end;
    bool decays;
  };
  AdamConfig config_;
  double weight_decay_;
  std::vector<Segment> segments_;
  AlignedVector<S> m_, v_;
  int64_t t_ = 0;
};

/// The L2 norm of x: squares summed in double over 64 fixed chunks, then the chunks in order,
/// so any thread count gives the same bits.
template <class S>
double l2_norm(std::span<const S> x);

}  // namespace aetrain
