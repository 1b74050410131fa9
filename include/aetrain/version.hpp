// What this aetrain is built from, for `aetrain --version`, bug reports and benchmarks.
#pragma once

#include <string>

namespace aetrain {

/// "aetrain 0.1.0" and one line each for the compiler, MPI, HDF5, the GEMM backend (with the
/// vector instructions it was compiled for) and the vector extension of the CPU it runs on.
std::string version_text();

}  // namespace aetrain
