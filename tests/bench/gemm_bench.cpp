// The yardstick for training throughput: a library's own single-precision GEMM on the three
// products of every layer of one training step: forward W x, kernel gradient dY x^T and input
// gradient W^T dY, at the rank's batch. `--backend eigen`: Eigen's noalias products with
// Eigen's OpenMP threading; `--backend blis` (in builds with BLIS): bli_sgemm on BLIS's
// threads, every product, whatever its size.
//
//   gemm_bench --layers 784,512,128,32 --batch 128 --threads 1 [--seconds 2] [--backend eigen]
//
// Prints one JSON line: {"gflops": ..., "seconds": ..., "threads": ..., "batch": ..., "backend":
// ...}.
#include <Eigen/Core>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#if defined(AETRAIN_GEMM_BLIS)
#include <blis.h>
#endif

namespace {

using Mat = Eigen::MatrixXf;

struct Layer {
  Mat w, x, y, dy, dw, dx;
};

std::vector<long> parse_widths(const char* text) {
  std::vector<long> out;
  for (const char* p = text; *p;) {
    char* end = nullptr;
    out.push_back(std::strtol(p, &end, 10));
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<long> widths{784, 512, 128, 32};
  long batch = 128;
  int threads = 1;
  double seconds = 2.0;
  std::string backend = "eigen";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--layers"))
      widths = parse_widths(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch"))
      batch = std::atol(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seconds"))
      seconds = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--backend"))
      backend = argv[i + 1];
  }
  Eigen::setNbThreads(threads);
  std::vector<long> dims(widths);  // input, encoder, mirrored decoder
  for (size_t i = widths.size() - 1; i-- > 0;) dims.push_back(widths[i]);
  std::vector<Layer> layers;
  double flops_per_step = 0;
  for (size_t l = 0; l + 1 < dims.size(); ++l) {
    const long in = dims[l], out = dims[l + 1];
    layers.push_back({Mat::Random(out, in), Mat::Random(in, batch), Mat(out, batch),
                      Mat::Random(out, batch), Mat(out, in), Mat(in, batch)});
    flops_per_step += 3 * 2.0 * double(in) * double(out) * double(batch);
  }
  auto eigen_step = [&] {
    for (Layer& l : layers) {
      l.y.noalias() = l.w * l.x;
      l.dw.noalias() = l.dy * l.x.transpose();
      l.dx.noalias() = l.w.transpose() * l.dy;
    }
  };
  std::function<void()> step = eigen_step;
  bool known = backend == "eigen";
#if defined(AETRAIN_GEMM_BLIS)
  bli_thread_set_num_threads(threads);  // (the one threads call BLIS 0.9 and 1.x share)
  float one = 1, zero = 0;
  const auto gemm = [&](trans_t ta, trans_t tb, const Mat& a, const Mat& b, Mat& c) {
    const long k = ta == BLIS_NO_TRANSPOSE ? a.cols() : a.rows();
    bli_sgemm(ta, tb, c.rows(), c.cols(), k, &one, const_cast<float*>(a.data()), 1, a.rows(),
              const_cast<float*>(b.data()), 1, b.rows(), &zero, c.data(), 1, c.rows());
  };
  const trans_t n = BLIS_NO_TRANSPOSE, t = BLIS_TRANSPOSE;
  if (backend == "blis") {
    known = true;
    step = [&] {
      for (Layer& l : layers) {
        gemm(n, n, l.w, l.x, l.y);
        gemm(n, t, l.dy, l.x, l.dw);
        gemm(t, n, l.w, l.dy, l.dx);
      }
    };
  }
#endif
  if (!known) {
    std::fprintf(stderr, "gemm_bench: backend '%s' is not in this build\n", backend.c_str());
    return 2;
  }
  for (int i = 0; i < 3; ++i) step();  // warm caches and the thread pool
  const auto start = std::chrono::steady_clock::now();
  long steps = 0;
  double elapsed = 0;
  while (elapsed < seconds) {
    step();
    ++steps;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::printf(
      "{\"gflops\": %.3f, \"seconds\": %.3f, \"threads\": %d, \"batch\": %ld, \"backend\": "
      "\"%s\"}\n",
      flops_per_step * double(steps) / elapsed / 1e9, elapsed, threads, batch, backend.c_str());
  return 0;
}
