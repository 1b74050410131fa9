#include "aetrain/version.hpp"

#include "aetrain/comm.hpp"
#include "aetrain/gemm.hpp"
#include "aetrain/io.hpp"

namespace aetrain {
namespace {

std::string compiler() {
#if defined(__clang__)
  return "Clang " __clang_version__;
#elif defined(__GNUC__)
  return "GCC " __VERSION__;
#else
  return "unknown";
#endif
}

// The widest vector extension of the CPU this runs on (a binary built elsewhere may use less).
std::string cpu_vector_extension() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "AVX-512";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "AVX2, FMA";
  if (__builtin_cpu_supports("avx")) return "AVX";
  return "SSE";
#elif defined(__aarch64__)
  return "NEON";
#else
  return "unknown";
#endif
}

// How this binary was built: what, besides the sources, decides its results bit for bit.
std::string build() {
  std::string text = AETRAIN_BUILD_TYPE;
#if defined(__SANITIZE_ADDRESS__)
  text += ", AddressSanitizer and UndefinedBehaviorSanitizer";
#endif
  return text;
}

}  // namespace

std::string version_text() {
  return std::string("aetrain ") + AETRAIN_VERSION + "\n" + "compiler: " + compiler() + ", C++" +
         std::to_string(__cplusplus / 100 % 100) + "\n" + "build:    " + build() + "\n" +
         "MPI:      " + mpi_library_version() + "\n" + "HDF5:     " + hdf5_library_version() +
         "\n" + "GEMM:     " + gemm_backend() + "\n" + "CPU:      " + cpu_vector_extension();
}

}  // namespace aetrain
