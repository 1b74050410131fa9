// Uses the installed library: reads a checkpoint that `aetrain train` wrote, rebuilds its model
// and runs it on a fixed batch, then runs a freshly initialized model of the same architecture
// on the same batch.
//
//   consumer CHECKPOINT.h5
//
// The batch has 4 rows; row j, column i holds ((j * input_dim + i) % 97) / 97 (float32), so
// `aetrain evaluate` on those rows must report the same mean squared error as printed here.
#include <aetrain/checkpoint.hpp>
#include <aetrain/comm.hpp>
#include <aetrain/model.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  aetrain::MpiSession mpi(argc, argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer CHECKPOINT.h5\n");
    return 2;
  }
  try {
    const aetrain::Comm world = aetrain::Comm::world();
    const aetrain::Checkpoint ckpt = aetrain::read_checkpoint(argv[1]);
    const aetrain::ModelConfig& config = ckpt.header.model;
    std::printf("ranks %d\n", world.size());
    std::printf("architecture %s\n", aetrain::describe(config).c_str());
    std::printf("parameters %lld stored %zu\n",
                static_cast<long long>(aetrain::parameter_count(config)), ckpt.params.size());
    if (!ckpt.header.normalization.identity()) {
      std::fprintf(stderr,
                   "consumer: %s normalizes its input; this example takes models that do not\n",
                   argv[1]);
      return 1;
    }

    const aetrain::Index rows = 4, dim = config.input_dim;
    aetrain::Matrix<float> x(dim, rows);  // (input_dim, rows): one sample per column
    for (aetrain::Index j = 0; j < rows; ++j)
      for (aetrain::Index i = 0; i < dim; ++i)
        x(i, j) = static_cast<float>((j * dim + i) % 97) / 97.0f;
    const aetrain::ConstMatrixMap<float> batch(x.data(), dim, rows);

    aetrain::Autoencoder<float> trained(config, rows, /*threads=*/1);
    std::copy(ckpt.params.begin(), ckpt.params.end(), trained.params().begin());
    // forward returns the loss summed over the rows: each row's mean squared error (alpha 0).
    const double trained_mse = trained.forward(batch) / double(rows);

    aetrain::Autoencoder<float> fresh(config, rows, /*threads=*/1);
    fresh.init_glorot(/*seed=*/7);
    const double fresh_mse = fresh.forward(batch) / double(rows);

    std::printf("trained mse %.9g\n", trained_mse);
    std::printf("fresh mse %.9g\n", fresh_mse);
    return std::isfinite(trained_mse) && std::isfinite(fresh_mse) ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: error: %s\n", e.what());
    return 1;
  }
}
