// What the checksums of checkpoint format 5 cost a write: the same checkpoint (parameters, Adam's
// m and v) written in turns, on one process, each made durable (fsync, rename) as aetrain does:
//   v4            contiguous datasets, no checksum: what format 4's writer did
//   v4 writeback  the same, the disk started on each tree as the next is written (as format
//                 5's writer does): the checksums' own cost is v5 against this
//   v5            write_checkpoint: Fletcher-32 chunks and the file's CRC-32 (format 5)
// and each write's HDF5 part (until the file is closed) apart from its fsync and rename, and
// read_checkpoint of the v5 file.
//
//   checkpoint_bench --dir DIR [--input 4096] [--layers 1024,256,64] [--rounds 7]
//
// Prints one JSON line per measurement: {"round": r, "what": ..., "seconds": ...};
// tests/bench/bench_checkpoint.py runs it and prints medians with the CPU.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "aetrain/checkpoint.hpp"
#include "aetrain/comm.hpp"
#include "aetrain/layers.hpp"
#include "aetrain/model.hpp"
#include "aetrain/outputs.hpp"
#include "h5.hpp"

namespace {

using namespace aetrain;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void report(int round, const char* what, double seconds) {
  std::printf("{\"round\": %d, \"what\": \"%s\", \"seconds\": %.6f}\n", round, what, seconds);
  std::fflush(stdout);
}

// The checkpoint's trees as format 4 stored them (contiguous datasets), with or without the
// disk started on each tree; made durable the same way. Returns the HDF5 part's time.
double write_trees(const std::string& path, const ModelConfig& model,
                   const std::vector<const std::vector<float>*>& trees, bool writeback) {
  const Clock::time_point start = Clock::now();
  const std::string tmp = path + ".tmp";
  {
    h5::Handle file = h5::create_file(tmp);
    const char* names[] = {"model", "m", "v"};
    for (size_t t = 0; t < trees.size(); ++t) {
      h5::Handle root = h5::create_group(file, names[t]);
      h5::Handle enc = h5::create_group(root, "encoder"), dec = h5::create_group(root, "decoder");
      for (const LayerShape& l : layer_shapes(model)) {
        h5::Handle g = h5::create_group(l.decoder ? dec : enc, "layer_" + std::to_string(l.index));
        const float* kernel = trees[t]->data() + l.kernel_offset;
        const float* bias = trees[t]->data() + l.bias_offset;
        h5::write_rows(h5::create_dataset(g, "kernel", {l.in, l.out}), 0, l.in, kernel);
        h5::write_rows(h5::create_dataset(g, "bias", {l.out}), 0, l.out, bias);
      }
      if (writeback) h5::start_writeback(file);
    }
    h5::flush(file);
  }
  const double hdf5 = since(start);
  publish_file(tmp, path, nullptr);
  return hdf5;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int64_t input = 4096;
  std::vector<int64_t> widths = {1024, 256, 64};
  int rounds = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--dir")
      dir = value;
    else if (key == "--input")
      input = std::stoll(value);
    else if (key == "--rounds")
      rounds = std::stoi(value);
    else if (key == "--layers") {
      widths.clear();
      std::stringstream s(value);
      for (std::string w; std::getline(s, w, ',');) widths.push_back(std::stoll(w));
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr,
                 "usage: checkpoint_bench --dir DIR [--input N] [--layers A,B,C] [--rounds R]\n");
    return 2;
  }
  h5::quiet_errors();

  CheckpointHeader header;
  header.model.input_dim = input;
  header.model.encoder_widths = widths;
  header.train.config = "layers = [1024, 256, 64]\n";
  header.train.sources = {{"data.h5", "/train", 0, 16384}};
  const size_t n = size_t(parameter_count(header.model));
  std::vector<float> params(n), m(n), v(n);
  uint64_t state = 88172645463325252ull;  // xorshift: values whose bytes differ
  for (auto* a : {&params, &m, &v})
    for (float& x : *a) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      x = float(int64_t(state >> 11) % 2000001 - 1000000) * 1e-6f;
    }
  std::printf("{\"parameters\": %zu, \"bytes\": %zu}\n", n, 3 * n * sizeof(float));

  const std::string v4 = dir + "/bench_v4.h5", v4w = dir + "/bench_v4_writeback.h5",
                    v5 = dir + "/bench_v5.h5";
  for (int r = 0; r < rounds; ++r) {
    // Interleaved, in a rotating order, so that no variant always follows the same one.
    for (int k = 0; k < 3; ++k) {
      const int which = (r + k) % 3;
      Clock::time_point t = Clock::now();
      if (which == 0) {
        const double hdf5 = write_trees(v4, header.model, {&params, &m, &v}, false);
        report(r, "v4", since(t));
        report(r, "v4 hdf5 part", hdf5);
      } else if (which == 1) {
        const double hdf5 = write_trees(v4w, header.model, {&params, &m, &v}, true);
        report(r, "v4 writeback", since(t));
        report(r, "v4 writeback hdf5 part", hdf5);
      } else {
        write_checkpoint(v5, header, params, m, v);
        report(r, "v5", since(t));
      }
    }
    const Clock::time_point t = Clock::now();
    const Checkpoint c = read_checkpoint(v5);
    report(r, "v5 read", since(t));
    if (c.params != params) return 1;
  }
  for (const std::string& p : {v4, v4w, v5}) std::filesystem::remove(p);
  return 0;
}
