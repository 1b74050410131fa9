// The autoencoder: parameter layout, flat parameter and gradient buffers, forward and backward.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "aetrain/config.hpp"
#include "aetrain/gemm.hpp"

namespace aetrain {

/// One dense layer's place in the flat buffers. Its kernel is an (out,in) column-major block,
/// byte-identical to the checkpoint's row-major [in, out] "kernel"; its bias (out) follows.
struct LayerShape {
  Index in = 0, out = 0;
  Index kernel_offset = 0, bias_offset = 0;
  Activation activation = Activation::linear;
  bool decoder = false;  // else encoder
  int index = 0;         // position within the encoder or the decoder
};

/// Throws std::invalid_argument unless the architecture has an input and positive widths.
void validate(const ModelConfig& config);
/// The layers, encoder then mirrored decoder, and where each lives in the flat buffers.
std::vector<LayerShape> layer_shapes(const ModelConfig& config);
/// The number of parameters of the architecture.
Index parameter_count(const ModelConfig& config);
/// "784-512-128-32 (relu, code relu, output sigmoid)": the architecture for a person.
std::string describe(const ModelConfig& config);

/// Dense autoencoder with loss = alpha * mean((h - x)^2) + (1 - alpha) * mean((y - x)^2) per
/// sample, h the code and y the reconstruction. Every buffer is allocated by the constructor:
/// forward and backward allocate nothing.
template <class S>
class Autoencoder {
 public:
  /// A model for batches of up to `max_batch` samples whose products use up to `threads` threads.
  Autoencoder(const ModelConfig& config, Index max_batch, int threads, double alpha = 0.0)
      : Autoencoder(config, max_batch, threads, alpha, nullptr) {}
  /// A worker of `owner`: the same model (architecture, alpha) reading owner's parameters, not
  /// a copy of them (owner must outlive it), with its own workspace for batches of up to
  /// `max_batch` on `threads` threads. It owns no parameters or gradient: its params() and
  /// grads() are empty, and its gradients go where backward(out) says.
  Autoencoder(const Autoencoder& owner, Index max_batch, int threads)
      : Autoencoder(owner.config_, max_batch, threads, owner.alpha_, owner.weights_) {}
  Autoencoder(Autoencoder&&) = default;  // weights_ follows the moved buffer
  Autoencoder(const Autoencoder&) = delete;
  Autoencoder& operator=(const Autoencoder&) = delete;

  /// Glorot-uniform kernels and zero biases (Glorot and Bengio, AISTATS 2010), drawn from `seed`.
  void init_glorot(uint64_t seed);

  /// Runs x (input_dim, n), n <= max_batch; returns the loss summed over the n samples.
  double forward(ConstMatrixMap<S> x) { return forward(x, x); }
  /// Runs `input` and measures the loss against `target` (same shape): a denoising step's
  /// corrupted rows and their clean originals.
  double forward(ConstMatrixMap<S> input, ConstMatrixMap<S> target);
  /// Writes the gradient of the last forward's loss sum into grads().
  void backward() { backward(grads()); }
  /// The same into `out` (laid out as params()).
  void backward(std::span<S> out);
  /// The codes h (code width, n) of x (input_dim, n): the encoder alone.
  ConstMatrixMap<S> encode(ConstMatrixMap<S> x);
  /// The last forward's reconstruction y (input_dim, n).
  ConstMatrixMap<S> output() const;

  std::span<S> params() { return {params_.data(), params_.size()}; }
  std::span<const S> params() const { return {params_.data(), params_.size()}; }
  /// Same layout as params().
  std::span<S> grads() { return {grads_.data(), grads_.size()}; }

  const ModelConfig& config() const { return config_; }
  const std::vector<LayerShape>& layers() const { return layers_; }
  Index max_batch() const { return max_batch_; }

 private:
  // `shared`: the parameters to read instead of owning them (a worker's), or null.
  Autoencoder(const ModelConfig& config, Index max_batch, int threads, double alpha,
              const S* shared);
  ConstMatrixMap<S> kernel(const LayerShape& l) const {
    return {weights() + l.kernel_offset, l.out, l.in};
  }
  ConstVectorMap<S> bias(const LayerShape& l) const { return {weights() + l.bias_offset, l.out}; }
  const S* weights() const { return weights_; }
  // Layer l's activations (out, n) in the workspace.
  MatrixMap<S> activations(size_t l, Index n) { return {acts_[l].data(), layers_[l].out, n}; }
  ConstMatrixMap<S> activations(size_t l, Index n) const {
    return {acts_[l].data(), layers_[l].out, n};
  }
  // Runs the first `count` layers on x; returns the last one's activations.
  ConstMatrixMap<S> run_layers(ConstMatrixMap<S> x, size_t count);

  ModelConfig config_;
  std::vector<LayerShape> layers_;
  Index n_params_;
  Index max_batch_;
  double alpha_;
  size_t code_layer_;  // index of the layer whose output is the code
  AlignedVector<S> params_;
  AlignedVector<S> grads_;
  const S* weights_;               // the parameters read: params_, or a worker's owner's
  std::vector<Matrix<S>> acts_;    // per layer: (out, max_batch)
  Matrix<S> delta_, delta_below_;  // (widest layer, max_batch) each
  const S* x_ = nullptr;           // the last forward's input
  const S* target_ = nullptr;      // and its target
  Index n_ = 0;                    // and their sample count
  Gemm<S> gemm_;
};

}  // namespace aetrain
