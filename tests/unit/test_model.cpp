// Layer kernels against their loop twins, and the model's gradient against central finite
// differences in double precision: every activation, alpha = 0 and alpha > 0, deeper models.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "aetrain/layers.hpp"
#include "aetrain/model.hpp"
#include "aetrain/rng.hpp"

namespace aetrain {
namespace {

TEST(Layers, DenseKernelsMatchLoops) {
  const Index in = 37, out = 19, n = 11;
  Matrix<double> w = Matrix<double>::Random(out, in), x = Matrix<double>::Random(in, n);
  Matrix<double> dy = Matrix<double>::Random(out, n);
  Vector<double> b = Vector<double>::Random(out);
  Gemm<double> gemm(2);
  gemm.reserve(out, n, in);
  gemm.reserve(out, in, n);
  gemm.reserve(in, n, out);
  Matrix<double> y(out, n), y_ref(out, n), dw(out, in), dw_ref(out, in), dx(in, n), dx_ref(in, n);
  Vector<double> db(out), db_ref(out);
  ConstMatrixMap<double> wm(w.data(), out, in), xm(x.data(), in, n), dym(dy.data(), out, n);
  ConstVectorMap<double> bm(b.data(), out);
  dense_forward<double>(MatrixMap<double>(y.data(), out, n), wm, bm, xm, gemm);
  dense_forward_ref<double>(MatrixMap<double>(y_ref.data(), out, n), wm, bm, xm);
  dense_backward_params<double>(MatrixMap<double>(dw.data(), out, in),
                                VectorMap<double>(db.data(), out), dym, xm, gemm);
  dense_backward_input<double>(MatrixMap<double>(dx.data(), in, n), wm, dym, gemm);
  dense_backward_ref<double>(MatrixMap<double>(dw_ref.data(), out, in),
                             VectorMap<double>(db_ref.data(), out),
                             MatrixMap<double>(dx_ref.data(), in, n), dym, wm, xm);
  EXPECT_LE((y - y_ref).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LE((dw - dw_ref).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LE((db - db_ref).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LE((dx - dx_ref).cwiseAbs().maxCoeff(), 1e-12);
}

TEST(Layers, ActivationsMatchTheirFormulas) {
  Matrix<double> z(1, 5);
  z << -2.0, -0.5, 0.0, 0.5, 2.0;
  for (Activation f :
       {Activation::relu, Activation::sigmoid, Activation::tanh, Activation::linear}) {
    Matrix<double> a = z;
    activation_forward<double>(f, MatrixMap<double>(a.data(), 1, 5));
    for (Index i = 0; i < 5; ++i) {
      const double v = z(0, i);
      const double expect = f == Activation::relu      ? std::max(0.0, v)
                            : f == Activation::sigmoid ? 1.0 / (1.0 + std::exp(-v))
                            : f == Activation::tanh    ? std::tanh(v)
                                                       : v;
      EXPECT_NEAR(a(0, i), expect, 1e-15) << name_of(f) << " at " << v;
    }
  }
  EXPECT_EQ(from_name<Activation>("tanh"), Activation::tanh);
  EXPECT_THROW(from_name<Activation>("softmax"), std::invalid_argument);
}

// The loss of input x against target t summed over samples, written from the definition with
// the loop kernels.
double loss_by_definition(const ModelConfig& config, std::span<const double> params,
                          const Matrix<double>& x, const Matrix<double>& t, double alpha) {
  const std::vector<LayerShape> layers = layer_shapes(config);
  Matrix<double> a = x, code;
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerShape& s = layers[l];
    Matrix<double> y(s.out, x.cols());
    dense_forward_ref<double>(MatrixMap<double>(y.data(), s.out, x.cols()),
                              ConstMatrixMap<double>(params.data() + s.kernel_offset, s.out, s.in),
                              ConstVectorMap<double>(params.data() + s.bias_offset, s.out),
                              ConstMatrixMap<double>(a.data(), s.in, x.cols()));
    activation_forward<double>(s.activation, MatrixMap<double>(y.data(), s.out, x.cols()));
    a = y;
    if (l + 1 == config.encoder_widths.size()) code = y;
  }
  const double d = double(x.rows());
  double total = 0;
  for (Index c = 0; c < x.cols(); ++c) {
    total += (1 - alpha) * (a.col(c) - t.col(c)).squaredNorm() / d;
    if (alpha > 0) total += alpha * (code.col(c) - t.col(c)).squaredNorm() / d;
  }
  return total;
}

// Central differences of the loss against the backward pass, for every parameter; `denoising`:
// the input is the target plus noise (as --noise trains), else the target itself.
void check_gradient(const ModelConfig& config, double alpha, bool denoising = false) {
  const Index n = 4;
  Autoencoder<double> model(config, n, 1, alpha);
  model.init_glorot(7);
  SplitMix64 rng(11);
  for (double& p : model.params()) p += 0.1 * (rng.uniform() - 0.5);  // non-zero biases too
  Matrix<double> x(config.input_dim, n);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = rng.uniform();
  Matrix<double> input = x;
  if (denoising)
    for (Index i = 0; i < x.size(); ++i) input.data()[i] += 0.3 * (rng.uniform() - 0.5);
  ConstMatrixMap<double> xm(input.data(), x.rows(), n), tm(x.data(), x.rows(), n);

  const double loss = model.forward(xm, tm);
  EXPECT_NEAR(loss, loss_by_definition(config, model.params(), input, x, alpha),
              1e-12 * (1 + loss));
  model.backward();
  const std::vector<double> grad(model.grads().begin(), model.grads().end());

  const double h = 1e-6;
  double worst = 0;
  for (size_t i = 0; i < grad.size(); ++i) {
    double& p = model.params()[i];
    const double saved = p;
    p = saved + h;
    const double up = model.forward(xm, tm);
    p = saved - h;
    const double down = model.forward(xm, tm);
    p = saved;
    const double numeric = (up - down) / (2 * h);
    const double err = std::abs(numeric - grad[i]) / std::max(1e-3, std::abs(numeric));
    worst = std::max(worst, err);
    EXPECT_LT(err, 1e-6) << "parameter " << i << ": backward " << grad[i] << ", finite " << numeric;
  }
  EXPECT_LT(worst, 1e-6);
}

ModelConfig config_with(Index input, std::vector<int64_t> widths, Activation hidden,
                        Activation code, Activation output) {
  ModelConfig c;
  c.input_dim = input;
  c.encoder_widths = std::move(widths);
  c.activation = hidden;
  c.code_activation = code;
  c.output_activation = output;
  return c;
}

class GradientPerActivation : public ::testing::TestWithParam<Activation> {};

TEST_P(GradientPerActivation, AlphaZero) {
  const Activation f = GetParam();
  check_gradient(config_with(6, {4, 3}, f, f, f), 0.0);
}

TEST_P(GradientPerActivation, AlphaPositive) {
  const Activation f = GetParam();
  // The encode loss needs the code as wide as the input.
  check_gradient(config_with(5, {4, 5}, f, f, f), 0.3);
}

TEST_P(GradientPerActivation, DenoisingAlphaPositive) {
  // Corrupted input, clean target: both losses measure against the target.
  const Activation f = GetParam();
  check_gradient(config_with(5, {4, 5}, f, f, f), 0.3, /*denoising=*/true);
}

INSTANTIATE_TEST_SUITE_P(Activations, GradientPerActivation,
                         ::testing::Values(Activation::relu, Activation::sigmoid, Activation::tanh,
                                           Activation::linear),
                         [](const auto& info) { return std::string(name_of(info.param)); });

TEST(Gradient, ThreeLayerEncoderMixedActivations) {
  check_gradient(
      config_with(7, {6, 4, 3}, Activation::tanh, Activation::linear, Activation::sigmoid), 0.0);
}

TEST(Gradient, ModelCardShapeWithAlphaOne) {
  // alpha = 1 trains the encoder alone: the decoder's gradient must be exactly zero.
  ModelConfig c = config_with(6, {6}, Activation::relu, Activation::relu, Activation::sigmoid);
  check_gradient(c, 1.0);
  Autoencoder<double> model(c, 2, 1, 1.0);
  model.init_glorot(1);
  Matrix<double> x = Matrix<double>::Constant(6, 2, 0.5);
  model.forward(ConstMatrixMap<double>(x.data(), 6, 2));
  model.backward();
  const LayerShape decoder = model.layers().back();
  for (Index i = decoder.kernel_offset; i < decoder.bias_offset + decoder.out; ++i)
    EXPECT_EQ(model.grads()[size_t(i)], 0.0);
}

TEST(Model, LayoutMirrorsTheEncoder) {
  const ModelConfig c =
      config_with(784, {512, 128, 32}, Activation::relu, Activation::linear, Activation::sigmoid);
  const std::vector<LayerShape> layers = layer_shapes(c);
  ASSERT_EQ(layers.size(), 6u);
  const Index expect[6][2] = {{784, 512}, {512, 128}, {128, 32}, {32, 128}, {128, 512}, {512, 784}};
  Index offset = 0;
  for (size_t l = 0; l < 6; ++l) {
    EXPECT_EQ(layers[l].in, expect[l][0]);
    EXPECT_EQ(layers[l].out, expect[l][1]);
    EXPECT_EQ(layers[l].kernel_offset, offset);
    offset += layers[l].in * layers[l].out + layers[l].out;
    EXPECT_EQ(layers[l].decoder, l >= 3);
  }
  EXPECT_EQ(layers[2].activation, Activation::linear);  // the code
  EXPECT_EQ(layers[1].activation, Activation::relu);
  EXPECT_EQ(layers[5].activation, Activation::sigmoid);  // the reconstruction
  EXPECT_EQ(parameter_count(c), 944176);
  EXPECT_EQ(parameter_count(
                config_with(100, {50}, Activation::relu, Activation::relu, Activation::sigmoid)),
            100 * 50 + 50 + 50 * 100 + 100);
}

TEST(Model, GlorotLimitsAndZeroBiases) {
  const ModelConfig c =
      config_with(300, {100}, Activation::relu, Activation::relu, Activation::sigmoid);
  Autoencoder<float> model(c, 1, 1);
  model.init_glorot(3);
  const LayerShape l = model.layers()[0];
  const double limit = std::sqrt(6.0 / 400.0);
  double sum_sq = 0;
  for (Index i = 0; i < l.in * l.out; ++i) {
    const double w = model.params()[size_t(l.kernel_offset + i)];
    EXPECT_LE(std::abs(w), limit);
    sum_sq += w * w;
  }
  // Uniform(-a, a) has variance a^2 / 3.
  EXPECT_NEAR(sum_sq / double(l.in * l.out), limit * limit / 3, 0.05 * limit * limit / 3);
  for (Index i = 0; i < l.out; ++i) EXPECT_EQ(model.params()[size_t(l.bias_offset + i)], 0.0f);
}

// A worker reads its owner's parameters as they are now (not a copy made when it was built) and
// computes what its owner computes, bit for bit, with its own workspace and no parameters.
TEST(Model, WorkerReadsItsOwnersParameters) {
  const ModelConfig c =
      config_with(12, {12, 12}, Activation::tanh, Activation::relu, Activation::sigmoid);
  Autoencoder<float> model(c, 8, 1, 0.25);
  Autoencoder<float> worker(model, 8, 1);
  EXPECT_TRUE(worker.params().empty());
  EXPECT_TRUE(worker.grads().empty());
  Matrix<float> x = Matrix<float>::Random(12, 8).cwiseAbs();
  ConstMatrixMap<float> xm(x.data(), 12, 8);
  std::vector<float> owner_grad(model.params().size()), worker_grad(model.params().size());
  for (uint64_t seed : {1, 2}) {  // the second time after the owner's weights changed
    model.init_glorot(seed);
    const double loss = model.forward(xm);
    model.backward(owner_grad);
    EXPECT_EQ(worker.forward(xm), loss);
    worker.backward(worker_grad);
    EXPECT_EQ(worker_grad, owner_grad);
    EXPECT_TRUE(worker.output() == model.output());
  }
}

TEST(Model, RefusesAlphaWithANarrowCode) {
  EXPECT_THROW(
      Autoencoder<float>(
          config_with(10, {5}, Activation::relu, Activation::relu, Activation::sigmoid), 4, 1, 0.5),
      std::invalid_argument);
}

}  // namespace
}  // namespace aetrain
