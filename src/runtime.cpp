#include "aetrain/runtime.hpp"

#include <omp.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#if defined(__SSE3__)
#include <pmmintrin.h>
#include <xmmintrin.h>
#endif

#include <Eigen/Core>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

int set_up_threads(int flag, const Comm& comm, Log& log) {
  const ThreadChoice choice = choose_threads(flag, comm.ranks_on_node());
  use_threads(choice.threads);
  double cpus[2] = {double(usable_cores()), -double(usable_cores())};  // min and -max
  comm.allreduce_min(std::span<double>(cpus));
  const int least = int(cpus[0]), most = int(-cpus[1]);
  log.line(
      "aetrain: " + std::to_string(comm.size()) + " rank(s) on " + std::to_string(comm.nodes()) +
      " node(s), " + std::to_string(choice.threads) + " thread(s) per rank (" + choice.source +
      "); each rank may run on " +
      (least == most ? std::to_string(least) : std::to_string(least) + "-" + std::to_string(most)) +
      " CPU(s), rank 0 on CPUs " + affinity_list());
  const int hardware = int(std::thread::hardware_concurrency());
  const int per_node = comm.ranks_on_node() * choice.threads;
  if (per_node > hardware)
    log.warn(std::to_string(comm.ranks_on_node()) + " ranks x " + std::to_string(choice.threads) +
             " threads = " + std::to_string(per_node) + " exceeds this node's " +
             std::to_string(hardware) +
             " cores: oversubscription slows every rank down (set --threads or OMP_NUM_THREADS)");
  else if (choice.threads > least)
    log.warn(std::to_string(choice.threads) + " threads per rank, but some rank is bound to " +
             std::to_string(least) + " CPU(s): its threads will share them (bind each rank to " +
             "as many cores as threads, e.g. mpirun --map-by slot:PE=" +
             std::to_string(choice.threads) + ")");
  return choice.threads;
}

double memory_mib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return double(resident) * double(sysconf(_SC_PAGESIZE)) / double(1 << 20);
}

int64_t read_bytes() {
  int64_t bytes = -1;
  if (FILE* f = std::fopen("/proc/self/io", "r")) {
    char key[32];
    long long value = 0;
    while (std::fscanf(f, "%31s %lld", key, &value) == 2)
      if (std::strcmp(key, "rchar:") == 0) bytes = value;
    std::fclose(f);
  }
  return bytes;
}

int64_t node_memory_bytes() {
  int64_t bytes = int64_t(sysconf(_SC_PHYS_PAGES)) * int64_t(sysconf(_SC_PAGESIZE));
  // cgroup v2, then v1: the limit a batch system set, when it is a number below the memory.
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    if (FILE* f = std::fopen(path, "r")) {
      long long limit = 0;
      if (std::fscanf(f, "%lld", &limit) == 1 && limit > 0) bytes = std::min<int64_t>(bytes, limit);
      std::fclose(f);
    }
  }
  return bytes;
}

int64_t default_data_memory(const Comm& comm) {
  double bytes = double(node_memory_bytes()) / 2 / std::max(1, comm.ranks_on_node());
  comm.allreduce_min(std::span<double>(&bytes, 1));
  return int64_t(bytes);
}

double peak_memory_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

namespace {

// The CPUs this rank's OpenMP threads may run on: the union of their masks, since with
// OMP_PROC_BIND the runtime narrows every thread, the main one too, to its own place.
cpu_set_t rank_cpus() {
  cpu_set_t all;
  CPU_ZERO(&all);
#pragma omp parallel
  {
    cpu_set_t mine;
    if (sched_getaffinity(0, sizeof mine, &mine) == 0) {
#pragma omp critical
      CPU_OR(&all, &all, &mine);
    }
  }
  return all;
}

}  // namespace

int usable_cores() {
  const cpu_set_t set = rank_cpus();
  const int n = CPU_COUNT(&set);
  return n > 0 ? n : int(std::thread::hardware_concurrency());
}

std::string affinity_list() {
  const cpu_set_t set = rank_cpus();
  std::string out;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &set)) continue;
    int last = c;
    while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, &set)) ++last;
    out +=
        (out.empty() ? "" : ",") + std::to_string(c) + (last > c ? "-" + std::to_string(last) : "");
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

namespace {

// Flushes denormal results (and inputs) to zero on the calling thread.
void flush_denormals() {
#if defined(__SSE3__)
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#elif defined(__aarch64__)
  uint64_t fpcr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
  __asm__ volatile("msr fpcr, %0" : : "r"(fpcr | (uint64_t(1) << 24)));  // FZ
#endif  // elsewhere denormals stay: correct, only slower
}

}  // namespace

void use_threads(int threads) {
  omp_set_num_threads(threads);
  Eigen::setNbThreads(threads);
  // Flush denormals to zero on every thread: Adam's moments of unused weights decay towards
  // denormal values, and arithmetic on denormals is many times slower.
#pragma omp parallel num_threads(threads)
  flush_denormals();
  flush_denormals();
}

}  // namespace aetrain
