// Checkpoint files: save, load, save again gives the same bytes; the normalization round trip;
// version-1 files and models without training state load; damaged, foreign and future files
// and bad normalizations are refused with Error(checkpoint); a flipped byte anywhere in a
// checkpoint or PCA model file is refused, or changes nothing that is read.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <thread>

#include <zlib.h>

#include "aetrain/checkpoint.hpp"
#include "aetrain/layers.hpp"
#include "aetrain/model.hpp"
#include "aetrain/pca.hpp"
#include "aetrain/rng.hpp"
#include "h5.hpp"
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
  t.block_rows = 64;
  t.window_rows = 512;
  t.sources = {{"data.h5", "/train", 0, 1000}, {"more/data2.h5", "/x", 0, 250}};
  t.best_val_loss = 0.0123;
  t.best_epoch = 2;
  t.epochs_since_best = 1;
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
  EXPECT_EQ(h.train.sources, s.header.train.sources);
  EXPECT_EQ(h.train.best_val_loss, 0.0123);
  EXPECT_EQ(h.normalization.kind, NormalizeKind::standard);
  EXPECT_EQ(h.normalization.rows, 12345);
  EXPECT_EQ(h.normalization.offset, s.header.normalization.offset);  // float64, exactly
  EXPECT_EQ(h.normalization.scale, s.header.normalization.scale);
  EXPECT_TRUE(c.has_training_state);

  write_checkpoint(dir_ + "/b.h5", c.header, c.params, c.m, c.v);
  EXPECT_EQ(test::file_bytes(dir_ + "/a.h5"), test::file_bytes(dir_ + "/b.h5"));
  EXPECT_EQ(std::system(("h5diff -q " + dir_ + "/a.h5 " + dir_ + "/b.h5").c_str()), 0);
}

// A count transform is /transform, and makes the file format version 6 (older aetrain versions
// refuse it rather than read the model without it); a file without one stays version 5.
TEST_F(CheckpointFiles, ACountTransformRoundTripsAsVersionSix) {
  Sample s = sample();
  write(dir_ + "/plain.h5", s);
  RowTransform& t = s.header.transform;
  t.asked = {.size_factor = 1e4, .scale = CountScale::log1p, .features = "var:highly_variable"};
  t.stored_cols = 40;
  t.columns = {0, 3, 4, 9, 10, 11, 20, 21, 30, 33, 38, 39};
  for (int64_t c : t.columns) t.names.push_back("gene" + std::to_string(c));
  write(dir_ + "/t.h5", s);
  EXPECT_EQ(read_checkpoint(dir_ + "/t.h5").header.transform, t);
  EXPECT_EQ(read_checkpoint(dir_ + "/plain.h5").header.transform, RowTransform{});
  const auto version = [&](const std::string& path) {
    h5::Handle f = h5::open_file(path);
    return h5::read_int_attribute(h5::open_group(f, "/"), "format_version");
  };
  EXPECT_EQ(version(dir_ + "/t.h5"), 6);
  EXPECT_EQ(version(dir_ + "/plain.h5"), 5);
  // Columns that do not fit the model's inputs are refused.
  t.columns.pop_back();
  t.names.pop_back();
  write(dir_ + "/bad.h5", s);
  std::string message;
  EXPECT_EQ(load_error(dir_ + "/bad.h5", &message), ExitCode::checkpoint);
  EXPECT_NE(message.find("/transform: does not fit the model's 12 inputs"), std::string::npos)
      << message;
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

// Recomputes the checksum block as aetrain writes it, after a test changed a file on purpose
// (as another writer would have written it).
void reseal(const std::string& path) { reseal_checkpoint(path); }

// Opens a file to change it by this process alone (datasets with checksums cannot be written
// through MPI-IO but collectively).
h5::Handle serial_rw(const std::string& path) {
  return {H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose};
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
  reseal(dir_ + "/v1.h5");
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
  reseal(dir_ + "/full.h5");
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
      {"unknown normalization",
       [](const h5::Handle& f) {
         h5::Handle g = h5::open_group(f, "/normalization");
         H5Adelete(g.id(), "kind");
         h5::write_attribute(g, "kind", std::string("zscore"));
       }},
      {"offset",
       [](const h5::Handle& f) {
         h5::remove_link(f, "/normalization/offset");
         const double three[3] = {0, 0, 0};
         h5::write_dataset(h5::open_group(f, "/normalization"), "offset", {3}, three);
       }},
      {"not positive",
       [](const h5::Handle& f) {
         h5::remove_link(f, "/normalization/scale");
         std::vector<double> scale(12, 1.0);
         scale[4] = 0.0;
         h5::write_dataset(h5::open_group(f, "/normalization"), "scale", {12}, scale.data());
       }},
      {"non-finite",
       [](const h5::Handle& f) {
         h5::remove_link(f, "/normalization/offset");
         std::vector<double> offset(12, 1.0);
         offset[7] = std::nan("");
         h5::write_dataset(h5::open_group(f, "/normalization"), "offset", {12}, offset.data());
       }},
      {"rows",
       [](const h5::Handle& f) { H5Adelete(h5::open_group(f, "/normalization").id(), "rows"); }},
  };
  for (const auto& [needle, damage] : damages) {
    const std::string path = dir_ + "/bad_norm.h5";
    write(path, sample());
    {
      h5::Handle f = serial_rw(path);
      damage(f);
    }
    reseal(path);
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

// --- checksums (format version 5) -----------------------------------------------------------

// A small PCA model file's contents: 6 columns, 2 components.
PcaModel sample_pca() {
  PcaModel pca;
  pca.rows = 321;
  pca.mean = Eigen::VectorXd::LinSpaced(6, -2.0, 3.5);
  pca.components = Eigen::MatrixXd::Zero(6, 2);
  pca.components.col(0) << 0.6, 0.8, 0, 0, 0, 0;
  pca.components.col(1) << 0, 0, 0.28, 0.96, 0, 0;
  pca.explained_variance = Eigen::VectorXd(2);
  pca.explained_variance << 4.5, 1.25;
  pca.total_variance = 7.0;
  return pca;
}

Normalization sample_norm(int64_t d) {
  Normalization norm;
  norm.kind = NormalizeKind::minmax;
  norm.rows = 321;
  norm.offset = Eigen::VectorXd::LinSpaced(d, -1.0, 1.0);
  norm.scale = Eigen::VectorXd::LinSpaced(d, 0.5, 2.0);
  return norm;
}

// Exact bytes of a value, for comparisons that must see every bit (-0.0, NaN payloads).
template <class T>
std::string bits(const T* data, size_t n) {
  return std::string(reinterpret_cast<const char*>(data), n * sizeof(T));
}

// Everything read_checkpoint returns, as text: equal texts, equal contents (every bit).
struct Describe {
  std::string& out;
  void line(const char* name, const std::string& text) const { out += name + (": " + text) + "\n"; }
  void operator()(const char* name, int64_t v) const { line(name, std::to_string(v)); }
  void operator()(const char* name, uint64_t v) const { line(name, std::to_string(v)); }
  void operator()(const char* name, double v) const { line(name, bits(&v, 1)); }
  void operator()(const char* name, const std::string& v) const { line(name, v); }
  void operator()(const char* name, Activation v) const { line(name, name_of(v)); }
  void operator()(const char* name, const std::vector<int64_t>& v) const {
    line(name, bits(v.data(), v.size()));
  }
};

std::string describe(const Checkpoint& c) {
  std::string out = std::string(model_kind_name(c.kind)) + "\n" + c.created_by + "\n";
  const CheckpointHeader& h = c.header;
  const Describe d{out};
  model_fields(h.model, d);
  d("normalization", std::string(name_of(h.normalization.kind)));
  d("normalization rows", h.normalization.rows);
  out += bits(h.normalization.offset.data(), size_t(h.normalization.offset.size()));
  out += bits(h.normalization.scale.data(), size_t(h.normalization.scale.size()));
  d("training state", int64_t(c.has_training_state));
  d("missing", c.missing_state);
  adam_fields(h.adam, d);
  d("adam step", h.adam_step);
  train_state_fields(h.train, d);
  for (const SourceEntry& e : h.train.sources)
    out += e.file + "|" + e.dataset + "|" + std::to_string(e.first_row) + "|" +
           std::to_string(e.rows) + "\n";
  out += bits(c.params.data(), c.params.size()) + bits(c.m.data(), c.m.size()) +
         bits(c.v.data(), c.v.size());
  d("pca rows", c.pca.rows);
  d("pca total variance", c.pca.total_variance);
  out += bits(c.pca.mean.data(), size_t(c.pca.mean.size())) +
         bits(c.pca.components.data(), size_t(c.pca.components.size())) +
         bits(c.pca.explained_variance.data(), size_t(c.pca.explained_variance.size()));
  return out;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Where a dataset's (only) chunk starts in the file, and its size with the checksum.
std::pair<uint64_t, uint64_t> chunk_of(const std::string& path, const std::string& dataset) {
  h5::Handle f = h5::open_file(path);
  h5::Handle d = h5::open_dataset(f, dataset);
  const hsize_t origin[2] = {0, 0};
  unsigned filters = 0;
  haddr_t address = HADDR_UNDEF;
  hsize_t size = 0;
  EXPECT_GE(H5Dget_chunk_info_by_coord(d.id(), origin, &filters, &address, &size), 0) << dataset;
  EXPECT_NE(address, HADDR_UNDEF) << dataset;
  hsize_t userblock = 0;  // where addresses count from: the end of the user block before 1.14.4
  h5::Handle fcpl(H5Fget_create_plist(f.id()), H5Pclose);
  if (h5::chunk_addresses_skip_user_block()) {
    EXPECT_GE(H5Pget_userblock(fcpl.id(), &userblock), 0);
  }
  return {uint64_t(userblock + address), uint64_t(size)};
}

// The one place `needle` occurs in `bytes`.
size_t only_place(const std::string& bytes, const std::string& needle) {
  const size_t at = bytes.find(needle);
  EXPECT_NE(at, std::string::npos) << needle;
  EXPECT_EQ(bytes.find(needle, at + 1), std::string::npos) << needle << " occurs twice";
  return at;
}

class Checksums : public CheckpointFiles {
 protected:
  // Flips every bit of the byte at `offset` of `file` into a copy, loads the copy and expects
  // Error(checkpoint) with one line naming the copy, `object` and the checksum ("" for damage
  // that only the file's checksum sees).
  void expect_refused(const std::string& file, size_t offset, const std::string& object) {
    std::string bytes = test::file_bytes(file);
    ASSERT_LT(offset, bytes.size());
    bytes[offset] = char(bytes[offset] ^ 0xFF);
    const std::string copy = dir_ + "/flipped.h5";
    write_bytes(copy, bytes);
    std::string message;
    EXPECT_EQ(load_error(copy, &message), ExitCode::checkpoint) << object;
    const std::string start = (object.empty() ? copy : copy + ": " + object) +
                              ": checksum mismatch: the file is damaged (";
    EXPECT_EQ(message.rfind(start, 0), 0u) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
};

TEST_F(Checksums, EveryDatasetIsChunkedWithFletcher32AndTheFileIsInTheV18Format) {
  write(dir_ + "/a.h5", sample());
  h5::Handle f = h5::open_file(dir_ + "/a.h5");
  unsigned superblock = 0;
  {
    h5::Handle fcpl(H5Fget_create_plist(f.id()), H5Pclose);
    ASSERT_GE(H5Pget_version(fcpl.id(), &superblock, nullptr, nullptr, nullptr), 0);
  }
  EXPECT_EQ(superblock, 2u);  // checksummed (0 and 1 are not)
  int datasets = 0;
  // A generic lambda: HDF5 1.10 passes an H5O_info_t, 1.12 and later an H5O_info2_t.
  const auto count_dataset = [](hid_t root, const char* name, const auto* info,
                                void* count) -> herr_t {
    if (info->type != H5O_TYPE_DATASET) return 0;
    h5::Handle d(H5Dopen2(root, name, H5P_DEFAULT), H5Dclose);
    h5::Handle dcpl(H5Dget_create_plist(d.id()), H5Pclose);
    EXPECT_EQ(H5Pget_layout(dcpl.id()), H5D_CHUNKED) << name;
    EXPECT_EQ(H5Pget_nfilters(dcpl.id()), 1) << name;
    EXPECT_EQ(H5Pget_filter2(dcpl.id(), 0, nullptr, nullptr, nullptr, 0, nullptr, nullptr),
              H5Z_FILTER_FLETCHER32)
        << name;
    ++*static_cast<int*>(count);
    return 0;
  };
#if H5_VERSION_GE(1, 12, 0)
  H5Ovisit3(f.id(), H5_INDEX_NAME, H5_ITER_INC, count_dataset, &datasets, H5O_INFO_BASIC);
#else
  H5Ovisit(f.id(), H5_INDEX_NAME, H5_ITER_INC, count_dataset, &datasets);
#endif
  // 4 layers of kernel and bias, thrice; the normalization's 2; the sources table.
  EXPECT_EQ(datasets, 3 * 8 + 2 + 1);
}

// HDF5's own Fletcher-32 loop (H5_checksum_fletcher32 in H5checksum.c), for comparison.
uint32_t hdf5_fletcher32(const unsigned char* data, size_t bytes) {
  size_t len = bytes / 2;
  uint32_t sum1 = 0, sum2 = 0;
  while (len) {
    size_t tlen = len > 360 ? 360 : len;
    len -= tlen;
    do {
      sum1 += uint32_t(data[0]) << 8 | data[1];
      data += 2;
      sum2 += sum1;
    } while (--tlen);
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  if (bytes % 2) {
    sum1 += uint32_t(*data) << 8;
    sum2 += sum1;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  sum1 = (sum1 & 0xffff) + (sum1 >> 16);
  sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  return sum2 << 16 | sum1;
}

TEST_F(Checksums, Fletcher32IsHdf5s) {
  // (Every read of a dataset that aetrain wrote also checks its sums with HDF5's own filter.)
  std::vector<unsigned char> bytes(100000);
  SplitMix64 rng(5);
  for (unsigned char& b : bytes) b = static_cast<unsigned char>(rng.next());
  for (size_t n : {0, 1, 2, 3, 719, 720, 721, 1441, 99999, 100000})
    EXPECT_EQ(h5::fletcher32(bytes.data(), n), hdf5_fletcher32(bytes.data(), n)) << n;
  // Sums that are nonzero multiples of 65535 (0xFFFF in HDF5's folding), and zeros.
  for (int fill : {0x00, 0xFF, 0x01, 0x80})
    for (size_t n : {1, 2, 720, 721, 65536, 131071}) {
      const std::vector<unsigned char> same(n, static_cast<unsigned char>(fill));
      EXPECT_EQ(h5::fletcher32(same.data(), n), hdf5_fletcher32(same.data(), n))
          << fill << " x " << n;
    }
  std::vector<unsigned char> one(2 * 65535, 0);
  one[1] = 1;  // sum1 = 1, sum2 = 65535
  EXPECT_EQ(h5::fletcher32(one.data(), one.size()), hdf5_fletcher32(one.data(), one.size()));
}

TEST_F(Checksums, ChunksOfAboutOneMebibyte) {
  EXPECT_EQ(h5::checksummed_chunk_rows({4096, 1024}, 4), 256);  // 1 MiB
  EXPECT_EQ(h5::checksummed_chunk_rows({1000, 1000}, 4), 250);  // 4 chunks, not 3 and a stub
  EXPECT_EQ(h5::checksummed_chunk_rows({784, 512}, 4), 392);
  EXPECT_EQ(h5::checksummed_chunk_rows({7}, 8), 7);
  EXPECT_EQ(h5::checksummed_chunk_rows({0, 5}, 4), 0);        // empty: contiguous
  EXPECT_EQ(h5::checksummed_chunk_rows({3, 1 << 20}, 4), 1);  // a row of 4 MiB: one a chunk
}

TEST_F(Checksums, AFlippedByteInEachDatasetOfACheckpointIsRefusedNamingIt) {
  const std::string path = dir_ + "/ck.h5";
  write(path, sample());
  for (const std::string dataset :
       {"/model/encoder/layer_0/kernel", "/model/decoder/layer_1/bias",
        "/optimizer/m/encoder/layer_1/kernel", "/optimizer/v/decoder/layer_0/bias",
        "/normalization/offset", "/normalization/scale", "/train/sources"}) {
    const auto [at, size] = chunk_of(path, dataset);
    expect_refused(path, size_t(at + size / 2), dataset);  // a value
    expect_refused(path, size_t(at + size - 1), dataset);  // the checksum itself
  }
}

TEST_F(Checksums, AFlippedByteInEachDatasetOfAPcaModelIsRefusedNamingIt) {
  const std::string path = dir_ + "/pca.h5";
  write_pca_model(path, sample_pca(), sample_norm(6));
  const Checkpoint c = read_checkpoint(path);
  EXPECT_EQ(c.kind, ModelKind::pca);
  EXPECT_EQ(c.pca.mean, sample_pca().mean);
  for (const std::string dataset :
       {"/pca/mean", "/pca/components", "/pca/explained_variance", "/pca/explained_variance_ratio",
        "/model/encoder/layer_0/kernel", "/model/decoder/layer_0/bias", "/normalization/scale"}) {
    const auto [at, size] = chunk_of(path, dataset);
    expect_refused(path, size_t(at + size / 2), dataset);
  }
}

TEST_F(Checksums, AFlippedByteInAStringAttributeIsRefused) {
  // Their values are in HDF5's global heap, which only the file's checksum covers.
  const std::string path = dir_ + "/ck.h5";
  write(path, sample());
  const std::string bytes = test::file_bytes(path);
  expect_refused(path, only_place(bytes, "epochs = 9") + 3, "");          // /train config
  expect_refused(path, only_place(bytes, "sigmoid") + 1, "");             // output_activation
  expect_refused(path, only_place(bytes, "aetrain-checkpoint") + 8, "");  // / format
  // The heap's own bookkeeping: the size of the first string ("aetrain-checkpoint", 18 bytes),
  // which HDF5 1.10 would trust and copy that many bytes past its buffer.
  expect_refused(path, only_place(bytes, "aetrain-checkpoint") - 8, "");
  // A string in a dataset's chunk is checked by the chunk's checksum.
  expect_refused(path, only_place(bytes, "more/data2.h5") + 2, "/train/sources");
}

TEST_F(Checksums, TheChecksumBlockAndAnOtherProgramsChangesAreRefused) {
  const std::string path = dir_ + "/ck.h5";
  write(path, sample());
  EXPECT_EQ(test::file_bytes(path).substr(0, 14), "aetrain crc32 ");
  expect_refused(path, 15, "");   // a digit of the checksum
  expect_refused(path, 300, "");  // the block's padding
  {
    h5::Handle f = serial_rw(path);
    h5::Handle model = h5::open_group(f, "/model");
    H5Adelete(model.id(), "activation");
    h5::write_attribute(model, "activation", std::string("relu"));
  }
  std::string message;
  EXPECT_EQ(load_error(path, &message), ExitCode::checkpoint);
  EXPECT_NE(message.find("or was changed since aetrain wrote it"), std::string::npos) << message;
  reseal(path);  // what aetrain would have written with relu
  EXPECT_EQ(read_checkpoint(path).header.model.activation, Activation::relu);
  // Without the block (a copy made by another program), version 5 is refused.
  {
    h5::Handle copy = h5::create_file(dir_ + "/copy.h5");
    h5::Handle root = h5::open_group(copy, "/");
    h5::write_attribute(root, "format", std::string("aetrain-checkpoint"));
    h5::write_attribute(root, "format_version", int64_t(5));
  }
  EXPECT_EQ(load_error(dir_ + "/copy.h5", &message), ExitCode::checkpoint);
  EXPECT_NE(message.find("format version 5 without its checksum block"), std::string::npos)
      << message;
}

TEST_F(Checksums, EqualContentsGiveEqualFilesAcrossSeconds) {
  write(dir_ + "/a.h5", sample());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // no time stamp may differ
  write(dir_ + "/b.h5", sample());
  EXPECT_EQ(test::file_bytes(dir_ + "/a.h5"), test::file_bytes(dir_ + "/b.h5"));
  write_pca_model(dir_ + "/p.h5", sample_pca(), sample_norm(6));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  write_pca_model(dir_ + "/q.h5", sample_pca(), sample_norm(6));
  EXPECT_EQ(test::file_bytes(dir_ + "/p.h5"), test::file_bytes(dir_ + "/q.h5"));
}

// Flips each byte of a file (every `stride`-th), one at a time, and loads it: each load must
// either be refused with Error(checkpoint) in one line naming the file and the checksum, or
// return exactly what the intact file holds. Returns {refused, harmless} and prints them with
// what the refusals name.
std::pair<int, int> sweep(const std::string& path, const std::string& dir, size_t stride) {
  const std::string intact = test::file_bytes(path);
  const std::string expected = describe(read_checkpoint(path));
  const std::string copy = dir + "/sweep.h5";
  int refused = 0, harmless = 0;
  std::map<std::string, int> kinds;  // the refusals by their message less the file and object
  for (size_t at = 0; at < intact.size(); at += stride) {
    std::string bytes = intact;
    bytes[at] = char(bytes[at] ^ 0xFF);
    write_bytes(copy, bytes);
    try {
      const std::string loaded = describe(read_checkpoint(copy));
      if (loaded != expected) {  // the place only: the texts are long and mostly binary
        const size_t where = size_t(
            std::mismatch(loaded.begin(), loaded.end(), expected.begin(), expected.end()).first -
            loaded.begin());
        ADD_FAILURE() << "byte " << at << " changed what loads, from character " << where
                      << " of its description on";
      }
      ++harmless;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::checkpoint) << "byte " << at << ": " << e.what();
      const std::string m = e.what();
      EXPECT_EQ(m.rfind(copy + ": ", 0), 0u) << "byte " << at << ": " << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << "byte " << at << ": " << m;
      ++refused;
      const size_t checksum = m.find(": checksum mismatch");
      const size_t named = copy.size() + 2;
      if (checksum == std::string::npos && m.find("checksum mismatch") != named)
        ADD_FAILURE() << "byte " << at << ": " << m;
      ++kinds[checksum == std::string::npos ? "(the file's checksum alone)"
                                            : m.substr(named, checksum - named)];
    }
  }
  std::cout << path << ": " << intact.size() << " bytes, every " << stride << ": " << refused
            << " refused, " << harmless << " harmless\n";
  for (const auto& [kind, n] : kinds) std::cout << "  " << n << " x " << kind << "\n";
  return {refused, harmless};
}

TEST_F(Checksums, EveryFlippedByteOfACheckpointIsRefusedOrChangesNothing) {
  write(dir_ + "/small.h5", sample());
  // Every 13th byte (85 KB; every byte takes 80 s), which meets every structure of the file.
  const auto [refused, harmless] = sweep(dir_ + "/small.h5", dir_, 13);
  EXPECT_EQ(harmless, 0);  // the file's checksum covers every byte
  EXPECT_GT(refused, 0);
}

TEST_F(Checksums, EveryFlippedByteOfAPcaModelIsRefusedOrChangesNothing) {
  write_pca_model(dir_ + "/pca.h5", sample_pca(), sample_norm(6));
  const auto [refused, harmless] = sweep(dir_ + "/pca.h5", dir_, 13);
  EXPECT_EQ(harmless, 0);
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace aetrain
