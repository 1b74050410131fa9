// Plain option structs. No behaviour lives here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace aetrain {

enum class Activation { relu, sigmoid, tanh, linear };

/// The architecture: input width, encoder widths down to the code, mirrored decoder.
struct ModelConfig {
  int64_t input_dim = 0;
  std::vector<int64_t> encoder_widths;  // the last one is the code width
  Activation activation = Activation::relu;
  Activation code_activation = Activation::relu;
  Activation output_activation = Activation::sigmoid;
};

/// Adam's hyperparameters (Keras' defaults).
struct AdamConfig {
  double learning_rate = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-7;
};

/// A 2-D dataset in an HDF5 file; rows are samples.
struct DataSource {
  std::string file;
  std::string dataset = "/train";
};

/// Everything `aetrain train` needs.
struct TrainConfig {
  DataSource data;
  DataSource val;  // val.file empty: no validation
  ModelConfig model;
  AdamConfig adam;
  double alpha = 0.0;  // weight of the encode loss mean((h - x)^2)
  int64_t epochs = 1;
  int64_t global_batch = 10;  // split over the ranks
  uint64_t seed = 0;
  bool shuffle = true;
  int threads = 0;  // 0: choose (see runtime.hpp)
  std::string checkpoint;
  int64_t checkpoint_every = 0;  // steps; 0: only at the end
  bool resume = false;
  std::string init_from;
  std::string metrics;
  int64_t log_every = 0;  // steps; 0: one line per epoch
  bool quiet = false;
};

}  // namespace aetrain
