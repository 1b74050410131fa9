#include "support.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "h5.hpp"
#include "aetrain/rng.hpp"

namespace aetrain::test {

std::string temp_dir(const Comm& comm) {
  std::string path;
  if (comm.rank() == 0) {
    std::string pattern = "/tmp/aetrain-test-XXXXXX";
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path = pattern;
  }
  comm.broadcast(path);
  return path;
}

std::vector<float> uniform(size_t n, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = float(rng.uniform());
  return v;
}

void write_rows(const std::string& path, const std::string& dataset, int64_t rows, int64_t cols,
                const std::vector<float>& values) {
  // Contiguous, as data files usually are (a chunked dataset would set the blocks read).
  h5::Handle f = h5::create_file(path);
  h5::write_rows(h5::create_dataset(f, dataset, {rows, cols}), 0, rows, values.data());
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace aetrain::test
