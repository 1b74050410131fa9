// Helpers shared by the tests: temporary directories and HDF5 input files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "aetrain/comm.hpp"
#include "aetrain/sampling.hpp"

namespace aetrain::test {

/// A fresh directory, the same path on every rank of comm (made by rank 0). Collective.
std::string temp_dir(const Comm& comm);

/// Returns when every rank of comm has called it (an allreduce: what rank 0 wrote before it is
/// there for all after it). Collective.
void wait_for_all(const Comm& comm);

/// Rows rank `plan` holds, and the file row of its shard row `local` (slot k of its c-th class
/// is shard row k * classes() + c: the rule the data module's shards follow).
int64_t shard_rows(const BatchPlan& plan);
int64_t file_row(const BatchPlan& plan, int64_t local);

/// Uniform [0, 1) floats from a fixed seed.
std::vector<float> uniform(size_t n, uint64_t seed);

/// Writes rows x cols row-major float32 values as `dataset` into a new file (one process).
void write_rows(const std::string& path, const std::string& dataset, int64_t rows, int64_t cols,
                const std::vector<float>& values);

/// The whole contents of a file.
std::string file_bytes(const std::string& path);

}  // namespace aetrain::test
