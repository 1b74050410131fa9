// Threads per rank and what the rank may run on.
#pragma once

#include <string>

#include "aetrain/comm.hpp"
#include "aetrain/log.hpp"

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
/// Chooses and applies the threads per rank, reports the launch on rank 0 (ranks, nodes,
/// threads and where they came from, CPU binding) so a bad launch shows at once, and warns
/// when ranks x threads oversubscribe a node or exceed a rank's binding. Collective.
/// Returns the threads per rank.
int set_up_threads(int flag, const Comm& comm, Log& log);
/// Makes SIGUSR1 and SIGTERM (what batch systems send before preempting a job) set a flag
/// instead of killing the process; the training loop reads it through stop_requested().
void catch_stop_signals();
/// The signal caught since catch_stop_signals(), or 0.
int stop_requested();

/// This process's peak resident memory so far, in MiB.
double peak_memory_mib();
/// This process's resident memory now, in MiB.
double memory_mib();
/// Bytes this process has read from files so far (rchar of /proc/self/io: every read, from the
/// page cache or the disk); -1 where the kernel does not tell.
int64_t read_bytes();
/// The memory of this node that this process may use: physical memory, or a smaller cgroup
/// limit (a batch system's).
int64_t node_memory_bytes();
/// The default memory per rank for training rows: half of the node's memory over the ranks on
/// it, the least over all ranks. Collective.
int64_t default_data_memory(const Comm& comm);
/// CPUs this rank's threads may run on (the union of their affinity masks).
int usable_cores();
/// Those CPUs, e.g. "0-1" or "0,2".
std::string affinity_list();

}  // namespace aetrain
