#include "aetrain/noise.hpp"

#include <charconv>
#include <cmath>
#include <numbers>
#include <stdexcept>

#include "aetrain/parallel.hpp"
#include "aetrain/rng.hpp"

namespace aetrain {
namespace {

constexpr uint64_t kNoiseStream = 0x6e6f697365ULL;  // "noise": apart from the other streams

// The generator of data row `row` in `epoch`.
SplitMix64 row_generator(uint64_t seed, int64_t epoch, int64_t row) {
  return SplitMix64(stream_seed(seed ^ kNoiseStream, uint64_t(epoch), uint64_t(row)));
}

}  // namespace

Noise parse_noise(const std::string& spec) {
  if (spec == "none") return {};
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  if (colon == std::string::npos || (kind != "gaussian" && kind != "mask"))
    throw std::invalid_argument("'" + spec + "' is not none, gaussian:SIGMA or mask:P");
  double value = 0;
  const char* begin = spec.data() + colon + 1;
  const char* end = spec.data() + spec.size();
  const auto [stop, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || stop != end || begin == end || !std::isfinite(value))
    throw std::invalid_argument("'" + spec + "': '" + std::string(begin, end) +
                                "' is not a number");
  if (kind == "gaussian") {
    if (!(value > 0)) throw std::invalid_argument("'" + spec + "': SIGMA must be above 0");
    return {Noise::Kind::gaussian, value};
  }
  if (!(value > 0 && value < 1)) throw std::invalid_argument("'" + spec + "': P must be in (0, 1)");
  return {Noise::Kind::mask, value};
}

std::string noise_text(const Noise& noise) {
  if (noise.kind == Noise::Kind::none) return "none";
  char number[32];
  const auto [end, ec] = std::to_chars(number, number + sizeof number, noise.amount);
  return (noise.kind == Noise::Kind::gaussian ? "gaussian:" : "mask:") + std::string(number, end);
}

void corrupt(const Noise& noise, uint64_t seed, int64_t epoch, const int64_t* rows,
             ConstMatrixMap<float> clean, MatrixMap<float> noisy) {
  const Index cols = clean.rows();
  const double a = noise.amount;
  for_slices(clean.cols(), 16 * cols, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      SplitMix64 g = row_generator(seed, epoch, rows[i]);
      const float* x = clean.data() + i * cols;
      float* y = noisy.data() + i * cols;
      if (noise.kind == Noise::Kind::mask) {
        for (Index j = 0; j < cols; ++j) y[j] = g.uniform() < a ? 0.0f : x[j];
        continue;
      }
      for (Index j = 0; j < cols; j += 2) {  // a pair of normals from each pair of uniforms
        const double u1 = double((g.next() >> 11) + 1) * 0x1.0p-53;  // in (0, 1]: log is finite
        const double u2 = g.uniform();
        const double r = std::sqrt(-2.0 * std::log(u1));
        const double angle = 2.0 * std::numbers::pi * u2;
        y[j] = float(double(x[j]) + a * (r * std::cos(angle)));
        if (j + 1 < cols) y[j + 1] = float(double(x[j + 1]) + a * (r * std::sin(angle)));
      }
    }
  });
}

}  // namespace aetrain
