#include "support.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "aetrain/rng.hpp"
#include "h5.hpp"

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

void wait_for_all(const Comm& comm) {
  double none = 0;
  comm.allreduce_sum(std::span<double>(&none, 1));
}

int64_t shard_rows(const BatchPlan& plan) {
  // All slots but the last are full; the last holds the classes below N - (S-1)B.
  const int64_t in_last_slot = plan.rows() - (plan.steps_per_epoch() - 1) * plan.global_batch();
  const int64_t in_last = std::clamp(in_last_slot - plan.first_class(), int64_t(0), plan.classes());
  return (plan.steps_per_epoch() - 1) * plan.classes() + in_last;
}

int64_t file_row(const BatchPlan& plan, int64_t local) {
  return plan.first_class() + local % plan.classes() +
         plan.global_batch() * (local / plan.classes());
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
