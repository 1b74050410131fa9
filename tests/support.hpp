// Helpers shared by the tests: temporary directories and HDF5 input files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "aetrain/comm.hpp"

namespace aetrain::test {

/// A fresh directory, the same path on every rank of comm (made by rank 0). Collective.
std::string temp_dir(const Comm& comm);

/// Uniform [0, 1) floats from a fixed seed.
std::vector<float> uniform(size_t n, uint64_t seed);

/// Writes rows x cols row-major float32 values as `dataset` into a new file (one process).
void write_rows(const std::string& path, const std::string& dataset, int64_t rows, int64_t cols,
                const std::vector<float>& values);

/// The whole contents of a file.
std::string file_bytes(const std::string& path);

}  // namespace aetrain::test
