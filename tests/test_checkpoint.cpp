// Checkpoint files: save, load, save again gives the same bytes; the normalization round trip;
// version-1 files and models without training state load; damaged, foreign and future files
// and bad normalizations are refused with Error(checkpoint).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

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
  Normalization& norm = s.header.normalization;
  norm.kind = NormalizeKind::standard;
  norm.rows = 12345;
  norm.offset = Eigen::VectorXd::LinSpaced(12, -300.0, 1e5);
  norm.scale = Eigen::VectorXd::LinSpaced(12, 0.01, 1000.0);
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
  EXPECT_EQ(h.normalization.kind, NormalizeKind::standard);
  EXPECT_EQ(h.normalization.rows, 12345);
  EXPECT_EQ(h.normalization.offset, s.header.normalization.offset);  // float64, exactly
  EXPECT_EQ(h.normalization.scale, s.header.normalization.scale);
  EXPECT_TRUE(c.has_training_state);

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
    h5::write_attribute(root, "format_version", kCheckpointFormatVersion + 1);
  }
  std::string message;
  EXPECT_EQ(load_error(dir_ + "/future.h5", &message), ExitCode::checkpoint);
  EXPECT_NE(message.find("newer"), std::string::npos) << message;
}

// Rewrites one attribute of the root group (as an older writer, or a user, would have it).
void set_root_attribute(const std::string& path, const std::string& name, int64_t value) {
  h5::Handle f = h5::open_file_rw(path, Comm::self());
  h5::Handle root = h5::open_group(f, "/");
  H5Adelete(root.id(), name.c_str());
  h5::write_attribute(root, name, value);
}

TEST_F(CheckpointFiles, VersionOneFilesLoadWithoutNormalization) {
  Sample s = sample();
  s.header.normalization = Normalization{};  // version 1 had none
  write(dir_ + "/v1.h5", s);
  set_root_attribute(dir_ + "/v1.h5", "format_version", 1);
  const Checkpoint c = read_checkpoint(dir_ + "/v1.h5");
  EXPECT_TRUE(c.has_training_state);
  EXPECT_TRUE(c.header.normalization.identity());
  EXPECT_EQ(c.params, s.params);
  EXPECT_EQ(c.header.train.global_step, 41);
}

TEST_F(CheckpointFiles, AModelWithoutTrainingStateLoads) {
  // What a user writes from weights trained elsewhere: the format attributes and /model.
  const Sample s = sample();
  write(dir_ + "/full.h5", s);
  {
    h5::Handle f = h5::open_file_rw(dir_ + "/full.h5", Comm::self());
    h5::remove_link(f, "/optimizer");
    h5::remove_link(f, "/train");
  }
  const Checkpoint c = read_checkpoint(dir_ + "/full.h5");
  EXPECT_EQ(c.kind, ModelKind::autoencoder);
  EXPECT_FALSE(c.has_training_state);
  EXPECT_EQ(c.missing_state, "/optimizer and /train");
  EXPECT_EQ(c.params, s.params);
  EXPECT_TRUE(c.m.empty());
  EXPECT_EQ(c.header.normalization.offset, s.header.normalization.offset);
}

TEST_F(CheckpointFiles, BadNormalizationsAreRefused) {
  // Each damage, applied to a fresh copy, is refused naming /normalization or the dataset.
  const std::vector<std::pair<std::string, std::function<void(const h5::Handle&)>>> damages = {
      {"unknown normalization", [](const h5::Handle& f) {
         h5::Handle g = h5::open_group(f, "/normalization");
         H5Adelete(g.id(), "kind");
         h5::write_attribute(g, "kind", std::string("zscore"));
       }},
      {"offset", [](const h5::Handle& f) {
         h5::remove_link(f, "/normalization/offset");
         const double three[3] = {0, 0, 0};
         h5::write_dataset(h5::open_group(f, "/normalization"), "offset", {3}, three);
       }},
      {"not positive", [](const h5::Handle& f) {
         h5::remove_link(f, "/normalization/scale");
         std::vector<double> scale(12, 1.0);
         scale[4] = 0.0;
         h5::write_dataset(h5::open_group(f, "/normalization"), "scale", {12}, scale.data());
       }},
      {"non-finite", [](const h5::Handle& f) {
         h5::remove_link(f, "/normalization/offset");
         std::vector<double> offset(12, 1.0);
         offset[7] = std::nan("");
         h5::write_dataset(h5::open_group(f, "/normalization"), "offset", {12}, offset.data());
       }},
      {"rows", [](const h5::Handle& f) {
         H5Adelete(h5::open_group(f, "/normalization").id(), "rows");
       }},
  };
  for (const auto& [needle, damage] : damages) {
    const std::string path = dir_ + "/bad_norm.h5";
    write(path, sample());
    {
      h5::Handle f = h5::open_file_rw(path, Comm::self());
      damage(f);
    }
    std::string message;
    EXPECT_EQ(load_error(path, &message), ExitCode::checkpoint) << needle;
    EXPECT_NE(message.find(needle), std::string::npos) << message;
    EXPECT_NE(message.find("bad_norm.h5"), std::string::npos) << message;
  }
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
