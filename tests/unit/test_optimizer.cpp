// Adam against values computed by hand (in double, outside this code base) and on a quadratic
// with a known minimum.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <vector>

#include "aetrain/optimizer.hpp"

namespace aetrain {
namespace {

TEST(Adam, FirstThreeStepsMatchHandComputedValues) {
  AdamConfig c;
  c.learning_rate = 0.1;
  Adam<double> adam(c, 2);
  std::vector<double> p{1.0, -2.0};
  const std::vector<std::vector<double>> grads{{0.5, -1.0}, {0.25, 2.0}, {-1.0, 0.0}};
  // p after each step, from m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
  // p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
  const double expect[3][2] = {{0.900000019999996, -1.900000009999999},
                               {0.8067820797048766, -1.9366103603884888},
                               {0.8274177793057861, -1.9649102669442553}};
  for (int t = 0; t < 3; ++t) {
    adam.step(p, grads[size_t(t)], 1.0, c.learning_rate);
    EXPECT_EQ(adam.steps(), t + 1);
    EXPECT_NEAR(p[0], expect[t][0], 1e-13);
    EXPECT_NEAR(p[1], expect[t][1], 1e-13);
  }
  EXPECT_NEAR(adam.m()[0], -0.037, 1e-15);
  EXPECT_NEAR(adam.v()[1], 0.004994001, 1e-15);
}

TEST(Adam, GradScaleIsAppliedBeforeTheMoments) {
  // Summed gradients scaled by 1/rows give the same step as averaged gradients.
  AdamConfig c;
  Adam<float> a(c, 3), b(c, 3);
  std::vector<float> pa{1, 2, 3}, pb{1, 2, 3};
  const std::vector<float> sum{4.0f, -8.0f, 2.0f}, mean{1.0f, -2.0f, 0.5f};
  for (int t = 0; t < 5; ++t) {
    a.step(pa, sum, 0.25f, c.learning_rate);
    b.step(pb, mean, 1.0f, c.learning_rate);
  }
  for (int i = 0; i < 3; ++i) EXPECT_EQ(pa[size_t(i)], pb[size_t(i)]);
}

TEST(Adam, FindsTheMinimumOfAQuadratic) {
  // f(p) = sum_i a_i (p_i - c_i)^2 / 2, minimum at c, very different curvatures.
  const std::vector<double> a{1.0, 10.0, 0.1, 100.0}, target{3.0, -1.0, 0.5, 2.0};
  AdamConfig c;
  c.learning_rate = 0.01;
  Adam<double> adam(c, 4);
  std::vector<double> p(4, 0.0), g(4);
  for (int t = 0; t < 20000; ++t) {
    for (size_t i = 0; i < 4; ++i) g[i] = a[i] * (p[i] - target[i]);
    adam.step(p, g, 1.0, c.learning_rate);
  }
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(p[i], target[i], 1e-3) << "coordinate " << i;
}

TEST(Adam, ReportsNonFiniteGradientsAndWeights) {
  Adam<float> adam({}, 40);
  std::vector<float> p(40, 1.0f), g(40, 0.5f);
  EXPECT_TRUE(adam.step(p, g, 1.0f, 1e-3));
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    std::vector<float> q(40, 1.0f), h(40, 0.5f);
    h[37] = bad;
    EXPECT_FALSE(Adam<float>({}, 40).step(q, h, 1.0f, 1e-3)) << bad;
  }
  AdamConfig huge;
  huge.learning_rate = 1e38;  // finite gradients, weights pushed past float's range
  std::vector<float> q(40, -3e38f), h(40, 1.0f);
  EXPECT_FALSE(Adam<float>(huge, 40).step(q, h, 1.0f, huge.learning_rate));
}

TEST(AdamW, DecaysTheGivenRangesOnlyAsTorchDoes) {
  // torch.optim.AdamW: p *= 1 - lr * wd, then the Adam step with the same lr. Parameters 1 and
  // 2 decay; 0 and 3 (biases, say) do not, and must follow plain Adam exactly.
  AdamConfig c;
  c.epsilon = 1e-8;
  const double lr = 0.01, wd = 0.5;
  Adam<double> adamw(c, 4, wd, {{1, 3}}), adam(c, 4);
  std::vector<double> p{1.0, -2.0, 3.0, 0.5}, q = p;
  const std::vector<double> g{0.5, -1.0, 0.25, 2.0};
  // By hand, step 1: m = 0.1 g, v = 0.001 g^2, m_hat = g, v_hat = g^2, update lr * g / (|g| + eps).
  std::vector<double> expect(4);
  for (size_t i = 0; i < 4; ++i) {
    const double keep = i == 1 || i == 2 ? 1 - lr * wd : 1.0;
    expect[i] = p[i] * keep - lr * g[i] / (std::abs(g[i]) + 1e-8);
  }
  adamw.step(p, g, 1.0, lr);
  adam.step(q, g, 1.0, lr);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(p[i], expect[i], 1e-14) << i;
  EXPECT_EQ(p[0], q[0]);
  EXPECT_EQ(p[3], q[3]);
  EXPECT_NE(p[1], q[1]);
  EXPECT_THROW(Adam<double>(c, 4, wd, {{2, 3}, {1, 2}}), std::logic_error);
}

TEST(Adam, TheLearningRateIsTheCallersPerStep) {
  // Two steps at lr 0.1 then 0.05 against the hand-computed values of FirstThreeSteps' first
  // step and a second step at half the rate.
  AdamConfig c;
  Adam<double> a(c, 1);
  std::vector<double> p{1.0};
  a.step(p, std::vector<double>{0.5}, 1.0, 0.1);
  EXPECT_NEAR(p[0], 0.900000019999996, 1e-13);
  const double m = 0.9 * 0.05 + 0.1 * 0.25, v = 0.999 * 0.00025 + 0.001 * 0.0625;
  const double expect =
      p[0] - 0.05 * (m / (1 - 0.81)) / (std::sqrt(v / (1 - 0.999 * 0.999)) + 1e-7);
  a.step(p, std::vector<double>{0.25}, 1.0, 0.05);
  EXPECT_NEAR(p[0], expect, 1e-13);
}

TEST(L2Norm, MatchesTheDefinitionForAnyThreadCount) {
  for (size_t n : {size_t(0), size_t(1), size_t(63), size_t(1000), size_t(300001)}) {
    std::vector<float> x(n);
    double expect = 0;
    for (size_t i = 0; i < n; ++i) {
      x[i] = std::sin(float(i) * 0.1f);
      expect += double(x[i]) * double(x[i]);
    }
    omp_set_num_threads(1);
    const double one = l2_norm<float>(x);
    omp_set_num_threads(2);
    const double two = l2_norm<float>(x);
    omp_set_num_threads(1);
    EXPECT_EQ(one, two) << n;
    EXPECT_NEAR(one, std::sqrt(expect), 1e-12 * (1 + std::sqrt(expect))) << n;
  }
}

TEST(Adam, OneAndTwoThreadsGiveTheSameBits) {
  const size_t n = 200000;  // above the threading threshold
  std::vector<float> p1(n), p2(n), g(n);
  for (size_t i = 0; i < n; ++i) {
    p1[i] = p2[i] = std::sin(float(i));
    g[i] = std::cos(float(i) * 0.37f);
  }
  Adam<float> a({}, n), b({}, n);
  omp_set_num_threads(1);
  for (int t = 0; t < 3; ++t) a.step(p1, g, 0.5f, 1e-3);
  omp_set_num_threads(2);
  for (int t = 0; t < 3; ++t) b.step(p2, g, 0.5f, 1e-3);
  omp_set_num_threads(1);
  EXPECT_EQ(p1, p2);
}

}  // namespace
}  // namespace aetrain
