// Checkpoint files: save, load, save again gives the same bytes; damaged, foreign and future
// files are refused with Error(checkpoint).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "aetrain/checkpoint.hpp"
#include "aetrain/h5.hpp"
#include "aetrain/model.hpp"
#include "support.hpp"

namespace aetrain {
namespace {

struct Sample {
  CheckpointHeader header;
  std::vector<float> params, m, v;
};

Sample sample() {
  Sample s;
  ModelConfig& model = s.header.model;
  model.input_dim = 12;
  model.encoder_widths = {7, 3};
  model.activation = Activation::tanh;
  model.code_activation = Activation::linear;
  model.output_activation = Activation::sigmoid;
  s.header.adam.learning_rate = 0.002;
  s.header.adam_step = 41;
  TrainState& t = s.header.train;
  t.epoch = 3;
  t.step_in_epoch = 5;
  t.global_step = 41;
  t.seed = 1234567890123ULL;
  t.global_batch = 32;
  t.world_size = 4;
  t.data_file = "data.h5";
  t.dataset = "/train";
  t.config = "layers = [7, 3]\nepochs = 9\n";
  const size_t n = size_t(parameter_count(model));
  s.params = test::uniform(n, 1);
  s.m = test::uniform(n, 2);
  s.v = test::uniform(n, 3);
  return s;
}

ExitCode load_error(const std::string& path, std::string* message = nullptr) {
  try {
    read_checkpoint(path);
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return ExitCode::ok;
}

class CheckpointFiles : public ::testing::Test {
 protected:
  std::string dir_ = test::temp_dir(Comm::self());
  void write(const std::string& path, const Sample& s) {
    write_checkpoint(path, s.header, s.params, s.m, s.v);
  }
};

TEST_F(CheckpointFiles, SaveLoadSaveGivesIdenticalContents) {
  const Sample s = sample();
  write(dir_ + "/a.h5", s);
  const Checkpoint c = read_checkpoint(dir_ + "/a.h5");
  EXPECT_EQ(c.params, s.params);
  EXPECT_EQ(c.m, s.m);
  EXPECT_EQ(c.v, s.v);
  const CheckpointHeader& h = c.header;
  EXPECT_EQ(h.model.input_dim, 12);
  EXPECT_EQ(h.model.encoder_widths, (std::vector<int64_t>{7, 3}));
  EXPECT_EQ(h.model.activation, Activation::tanh);
  EXPECT_EQ(h.model.code_activation, Activation::linear);
  EXPECT_EQ(h.model.output_activation, Activation::sigmoid);
  EXPECT_EQ(h.adam.learning_rate, 0.002);
  EXPECT_EQ(h.adam.beta2, 0.999);
  EXPECT_EQ(h.adam_step, 41);
  EXPECT_EQ(h.train.epoch, 3);
  EXPECT_EQ(h.train.step_in_epoch, 5);
  EXPECT_EQ(h.train.global_step, 41);
  EXPECT_EQ(h.train.seed, 1234567890123ULL);
  EXPECT_EQ(h.train.global_batch, 32);
  EXPECT_EQ(h.train.world_size, 4);
  EXPECT_EQ(h.train.data_file, "data.h5");
  EXPECT_EQ(h.train.dataset, "/train");
  EXPECT_EQ(h.train.config, s.header.train.config);

  write_checkpoint(dir_ + "/b.h5", c.header, c.params, c.m, c.v);
  EXPECT_EQ(test::file_bytes(dir_ + "/a.h5"), test::file_bytes(dir_ + "/b.h5"));
  EXPECT_EQ(std::system(("h5diff -q " + dir_ + "/a.h5 " + dir_ + "/b.h5").c_str()), 0);
}

TEST_F(CheckpointFiles, KernelsUseTheInOutLayout) {
  // y = x . kernel + b with kernel [in, out]: element (i, o) multiplies input i into output o.
  Sample s = sample();
  write(dir_ + "/k.h5", s);
  h5::Handle f = h5::open_file(dir_ + "/k.h5");
  EXPECT_EQ(h5::shape(h5::open_dataset(f, "/model/encoder/layer_0/kernel")),
            (std::vector<int64_t>{12, 7}));
  EXPECT_EQ(h5::shape(h5::open_dataset(f, "/model/decoder/layer_1/kernel")),
            (std::vector<int64_t>{7, 12}));
  const std::vector<float> k = h5::read_dataset(f, "/model/encoder/layer_0/kernel", {12, 7});
  const LayerShape l0 = layer_shapes(s.header.model)[0];
  ConstMatrixMap<float> w(s.params.data() + l0.kernel_offset, l0.out, l0.in);  // (out, in)
  for (int i = 0; i < 12; ++i)
    for (int o = 0; o < 7; ++o) EXPECT_EQ(k[size_t(i * 7 + o)], w(o, i));
}

TEST_F(CheckpointFiles, OverwritesAtomicallyAndLeavesNoTemporary) {
  Sample s = sample();
  write(dir_ + "/c.h5", s);
  s.params[0] = 42.0f;
  write(dir_ + "/c.h5", s);
  EXPECT_EQ(read_checkpoint(dir_ + "/c.h5").params[0], 42.0f);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/c.h5.tmp"));
}

TEST_F(CheckpointFiles, UnwritableDirectoryIsACheckpointError) {
  const Sample s = sample();
  EXPECT_THROW(write(dir_ + "/no/such/dir/c.h5", s), Error);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/no"));
}

TEST_F(CheckpointFiles, MissingFile) {
  std::string message;
  EXPECT_EQ(load_error(dir_ + "/none.h5", &message), ExitCode::checkpoint);
  EXPECT_NE(message.find("no such file"), std::string::npos) << message;
}

TEST_F(CheckpointFiles, NotHdf5) {
  std::ofstream(dir_ + "/text.h5") << "this is not a checkpoint\n";
  std::string message;
  EXPECT_EQ(load_error(dir_ + "/text.h5", &message), ExitCode::checkpoint);
  EXPECT_NE(message.find("not an HDF5 file"), std::string::npos) << message;
}

TEST_F(CheckpointFiles, Truncated) {
  write(dir_ + "/full.h5", sample());
  const std::string bytes = test::file_bytes(dir_ + "/full.h5");
  for (size_t keep : {size_t(100), bytes.size() / 2, bytes.size() - 10}) {
    std::ofstream(dir_ + "/cut.h5", std::ios::binary) << bytes.substr(0, keep);
    std::string message;
    EXPECT_EQ(load_error(dir_ + "/cut.h5", &message), ExitCode::checkpoint) << keep;
    EXPECT_NE(message.find("cut.h5"), std::string::npos) << message;
  }
}

TEST_F(CheckpointFiles, ForeignHdf5File) {
  test::write_rows(dir_ + "/foreign.h5", "/train", 2, 3, std::vector<float>(6, 0.5f));
  std::string message;
  EXPECT_EQ(load_error(dir_ + "/foreign.h5", &message), ExitCode::checkpoint);
  EXPECT_NE(message.find("not an aetrain checkpoint"), std::string::npos) << message;
}

TEST_F(CheckpointFiles, FutureFormatVersion) {
  {
    h5::Handle f = h5::create_file(dir_ + "/future.h5");
    h5::Handle root = h5::open_group(f, "/");
    h5::write_attribute(root, "format", std::string("aetrain-checkpoint"));
    h5::write_attribute(root, "format_version", int64_t(2));
  }
  std::string message;
  EXPECT_EQ(load_error(dir_ + "/future.h5", &message), ExitCode::checkpoint);
  EXPECT_NE(message.find("newer"), std::string::npos) << message;
}

TEST_F(CheckpointFiles, NonFiniteWeights) {
  Sample s = sample();
  s.params[5] = std::nanf("");
  write(dir_ + "/nan.h5", s);
  std::string message;
  EXPECT_EQ(load_error(dir_ + "/nan.h5", &message), ExitCode::checkpoint);
  EXPECT_NE(message.find("NaN"), std::string::npos) << message;
}

}  // namespace
}  // namespace aetrain
