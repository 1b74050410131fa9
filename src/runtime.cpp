#include "aetrain/runtime.hpp"

#include <omp.h>
#include <pmmintrin.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <sys/resource.h>
#include <xmmintrin.h>

#include <Eigen/Core>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

namespace aetrain {
namespace {

int positive_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);  // OMP_NUM_THREADS may be a list "4,2": take the first
  return end != v && n > 0 ? int(n) : 0;
}

}  // namespace

namespace {
volatile std::sig_atomic_t caught_signal = 0;
extern "C" void note_signal(int signal) { caught_signal = signal; }
}  // namespace

void catch_stop_signals() {
  struct sigaction action {};
  action.sa_handler = note_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int stop_requested() { return caught_signal; }

std::string unwritable_reason(const std::string& path) {
  const std::filesystem::path dir = std::filesystem::absolute(path).parent_path();
  if (!std::filesystem::is_directory(dir)) return "directory " + dir.string() + " does not exist";
  const std::string probe = (dir / (".aetrain-probe-" + std::to_string(getpid()))).string();
  const int fd = open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return "directory " + dir.string() + " is not writable (" + std::strerror(errno) + ")";
  close(fd);
  unlink(probe.c_str());
  return "";
}

void require_writable(const std::string& path, const Comm& comm) {
  comm.agree([&] {
    if (comm.rank() != 0) return;
    if (const std::string why = unwritable_reason(path); !why.empty())
      throw Error(ExitCode::usage, path + ": " + why);
  });
}

double peak_memory_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return int(std::thread::hardware_concurrency());
  return CPU_COUNT(&set);
}

std::string affinity_list() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return "unknown";
  std::string out;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &set)) continue;
    int last = c;
    while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, &set)) ++last;
    out += (out.empty() ? "" : ",") + std::to_string(c) +
           (last > c ? "-" + std::to_string(last) : "");
    c = last;
  }
  return out;
}

ThreadChoice choose_threads(int flag, int ranks_on_node) {
  if (flag > 0) return {flag, "--threads"};
  if (int n = positive_env("OMP_NUM_THREADS")) return {n, "OMP_NUM_THREADS"};
  if (int n = positive_env("SLURM_CPUS_PER_TASK")) return {n, "SLURM_CPUS_PER_TASK"};
  const int cores = usable_cores();
  const bool bound = cores < int(std::thread::hardware_concurrency());
  return {bound ? cores : std::max(1, cores / std::max(1, ranks_on_node)), "cores"};
}

void use_threads(int threads) {
  omp_set_num_threads(threads);
  Eigen::setNbThreads(threads);
  // Flush denormals to zero on every thread: Adam's moments of unused weights decay towards
  // denormal values, and arithmetic on denormals is many times slower.
#pragma omp parallel num_threads(threads)
  {
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
  }
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
}

}  // namespace aetrain
