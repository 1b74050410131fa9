#include "aetrain/model.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "aetrain/layers.hpp"
#include "aetrain/rng.hpp"

namespace aetrain {

void validate(const ModelConfig& config) {
  if (config.input_dim < 1) throw std::invalid_argument("the input width must be at least 1");
  if (config.encoder_widths.empty())
    throw std::invalid_argument("at least one encoder width is needed (--layers)");
  for (int64_t w : config.encoder_widths)
    if (w < 1)
      throw std::invalid_argument("every layer width must be at least 1, got " + std::to_string(w));
}

std::vector<LayerShape> layer_shapes(const ModelConfig& config) {
  validate(config);
  const auto& enc = config.encoder_widths;
  std::vector<Index> widths{config.input_dim};  // input, encoder, mirrored decoder
  widths.insert(widths.end(), enc.begin(), enc.end());
  for (size_t i = enc.size() - 1; i-- > 0;) widths.push_back(enc[i]);
  widths.push_back(config.input_dim);

  std::vector<LayerShape> layers;
  Index offset = 0;
  const size_t n_layers = widths.size() - 1, n_enc = enc.size();
  for (size_t l = 0; l < n_layers; ++l) {
    LayerShape s;
    s.in = widths[l];
    s.out = widths[l + 1];
    s.kernel_offset = offset;
    s.bias_offset = offset + s.in * s.out;
    offset = s.bias_offset + s.out;
    s.decoder = l >= n_enc;
    s.index = int(s.decoder ? l - n_enc : l);
    s.activation = l + 1 == n_layers ? config.output_activation
                   : l + 1 == n_enc  ? config.code_activation
                                     : config.activation;
    layers.push_back(s);
  }
  return layers;
}

Index parameter_count(const ModelConfig& config) {
  const LayerShape last = layer_shapes(config).back();
  return last.bias_offset + last.out;
}

std::string describe(const ModelConfig& m) {
  std::string s = std::to_string(m.input_dim);
  for (int64_t w : m.encoder_widths) s += "-" + std::to_string(w);
  return s + " (" + name_of(m.activation) + ", code " + name_of(m.code_activation) + ", output " +
         name_of(m.output_activation) + ")";
}

template <class S>
Autoencoder<S>::Autoencoder(const ModelConfig& config, Index max_batch, int threads, double alpha,
                            const S* shared)
    : config_(config),
      layers_(layer_shapes(config)),
      n_params_(parameter_count(config)),
      max_batch_(std::max<Index>(1, max_batch)),
      alpha_(alpha),
      code_layer_(config.encoder_widths.size() - 1),
      params_(shared ? 0 : n_params_, S(0)),
      grads_(shared ? 0 : n_params_, S(0)),
      weights_(shared ? shared : params_.data()),
      gemm_(threads) {
  if (alpha < 0 || alpha > 1) throw std::invalid_argument("alpha must be in [0, 1]");
  if (alpha > 0 && config.encoder_widths.back() != config.input_dim)
    throw std::invalid_argument(
        "alpha > 0 needs the code width (" + std::to_string(config.encoder_widths.back()) +
        ") to equal the input width (" + std::to_string(config.input_dim) + ")");
  Index widest = 0;
  for (const LayerShape& l : layers_) {
    acts_.emplace_back(l.out, max_batch_);
    widest = std::max({widest, l.in, l.out});
    gemm_.reserve(l.out, max_batch_, l.in);  // forward
    gemm_.reserve(l.out, l.in, max_batch_);  // kernel gradient
    gemm_.reserve(l.in, max_batch_, l.out);  // input gradient
  }
  delta_.resize(widest, max_batch_);
  delta_below_.resize(widest, max_batch_);
}

template <class S>
void Autoencoder<S>::init_glorot(uint64_t seed) {
  SplitMix64 rng(stream_seed(seed, 0x676c6f726f74ULL /* "glorot" */, 0));
  for (const LayerShape& l : layers_) {
    const double limit = std::sqrt(6.0 / double(l.in + l.out));
    S* w = params_.data() + l.kernel_offset;
    for (Index i = 0; i < l.in * l.out; ++i) w[i] = S((2.0 * rng.uniform() - 1.0) * limit);
    std::fill_n(params_.data() + l.bias_offset, l.out, S(0));
  }
}

template <class S>
ConstMatrixMap<S> Autoencoder<S>::run_layers(ConstMatrixMap<S> x, size_t count) {
  if (x.rows() != config_.input_dim || x.cols() > max_batch_)
    throw std::logic_error("forward: input of the wrong shape");
  const Index n = x.cols();
  for (size_t l = 0; l < count; ++l) {
    const LayerShape& s = layers_[l];
    MatrixMap<S> y = activations(l, n);
    dense_forward<S>(y, kernel(s), bias(s), l == 0 ? x : std::as_const(*this).activations(l - 1, n),
                     gemm_);
    activation_forward<S>(s.activation, y);
  }
  return std::as_const(*this).activations(count - 1, n);
}

template <class S>
double Autoencoder<S>::forward(ConstMatrixMap<S> input, ConstMatrixMap<S> target) {
  if (target.rows() != input.rows() || target.cols() != input.cols())
    throw std::logic_error("forward: target of the wrong shape");
  x_ = input.data();
  target_ = target.data();
  n_ = input.cols();
  ConstMatrixMap<S> y = run_layers(input, layers_.size());
  double loss = 0;
  if (alpha_ < 1) loss += (1 - alpha_) * squared_error_sum<S>(y, target);
  if (alpha_ > 0)
    loss +=
        alpha_ * squared_error_sum<S>(std::as_const(*this).activations(code_layer_, n_), target);
  return loss;
}

template <class S>
void Autoencoder<S>::backward(std::span<S> out) {
  if (out.size() != size_t(n_params_))
    throw std::logic_error("backward: gradient of the wrong size");
  const Index n = n_;
  const auto& self = std::as_const(*this);
  ConstMatrixMap<S> x(x_, config_.input_dim, n);
  ConstMatrixMap<S> target(target_, config_.input_dim, n);
  // `d` holds dL/dz of layer l, z its pre-activation; the two delta buffers take turns.
  S* d = delta_.data();
  S* d_below = delta_below_.data();
  const size_t last = layers_.size() - 1;
  {
    MatrixMap<S> dy(d, layers_[last].out, n);
    squared_error_backward<S>(dy, self.activations(last, n), target, S(1 - alpha_), false);
    activation_backward<S>(layers_[last].activation, self.activations(last, n), dy);
  }
  for (size_t l = last + 1; l-- > 0;) {
    const LayerShape& s = layers_[l];
    ConstMatrixMap<S> dz(d, s.out, n);
    dense_backward_params<S>(MatrixMap<S>(out.data() + s.kernel_offset, s.out, s.in),
                             VectorMap<S>(out.data() + s.bias_offset, s.out), dz,
                             l == 0 ? x : self.activations(l - 1, n), gemm_);
    if (l == 0) break;
    MatrixMap<S> da(d_below, s.in, n);  // dL/d(activations of layer l - 1)
    dense_backward_input<S>(da, kernel(s), dz, gemm_);
    if (l - 1 == code_layer_ && alpha_ > 0)
      squared_error_backward<S>(da, self.activations(l - 1, n), target, S(alpha_), true);
    activation_backward<S>(layers_[l - 1].activation, self.activations(l - 1, n), da);
    std::swap(d, d_below);
  }
}

template <class S>
ConstMatrixMap<S> Autoencoder<S>::encode(ConstMatrixMap<S> x) {
  return run_layers(x, code_layer_ + 1);
}

template <class S>
ConstMatrixMap<S> Autoencoder<S>::output() const {
  return {acts_.back().data(), config_.input_dim, n_};
}

template class Autoencoder<float>;
template class Autoencoder<double>;

}  // namespace aetrain
