// Threads per rank and what the rank may run on.
#pragma once

#include <string>

namespace aetrain {

/// A thread count and where it came from (for the start-up report).
struct ThreadChoice {
  int threads;
  std::string source;  // "--threads", "OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK", "cores"
};

/// --threads if given (> 0), else OMP_NUM_THREADS, else SLURM_CPUS_PER_TASK, else the cores this
/// rank may use, divided by the ranks on its node when the ranks are not bound to their own cores.
ThreadChoice choose_threads(int flag, int ranks_on_node);
/// Makes OpenMP (and so Eigen and our GEMM) use `threads` threads.
void use_threads(int threads);
/// This process's peak resident memory so far, in MiB.
double peak_memory_mib();
/// CPUs in this process's affinity mask.
int usable_cores();
/// The CPUs in this process's affinity mask, e.g. "0-1" or "0,2".
std::string affinity_list();

}  // namespace aetrain
