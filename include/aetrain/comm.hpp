// The MPI world in a small vocabulary: rank, size, sum, broadcast, agreement on errors, abort.
// The only module that calls MPI; no other header needs <mpi.h>.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "aetrain/error.hpp"

namespace aetrain {

/// Initializes MPI for the life of the object (threads: funneled; only the main thread calls MPI).
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

/// The MPI library and the standard it implements, e.g. "Open MPI v4.1.4 (MPI 3.1)".
std::string mpi_library_version();

/// A communicator. Cheap to copy; every collective must be called by all its ranks.
class Comm {
 public:
  /// All ranks of the job.
  static Comm world();
  /// This rank alone (for tests that compare a P-rank run with a 1-rank run).
  static Comm self();

  int rank() const;
  int size() const;
  /// Ranks of this communicator on this node, and the number of nodes it spans.
  int ranks_on_node() const;
  int nodes() const;

  /// Elementwise sum over ranks, in place.
  void allreduce_sum(std::span<float> data) const;
  void allreduce_sum(std::span<double> data) const;
  /// The elementwise sum over ranks of `send`, of which rank r receives the `counts[r]` values
  /// after those of the ranks before it into `recv`. Integer sums are exact: the same for any
  /// reduction order.
  void reduce_scatter_sum(std::span<const int64_t> send, std::span<int64_t> recv,
                          std::span<const int> counts) const;
  /// Rank r's `counts[r]` values, in place after those of the ranks before it in `data`, to
  /// every rank.
  void allgather(std::span<float> data, std::span<const int> counts) const;
  void allreduce_min(std::span<double> data) const;
  void allreduce_max(std::span<double> data) const;
  void allreduce_max(std::span<uint32_t> data) const;
  /// Every rank sends send_counts[d] values from send + send_displs[d] to rank d, and receives
  /// recv_counts[s] values from rank s into recv + recv_displs[s]. Counts and displacements are
  /// in values, one of each per rank.
  void alltoallv(const float* send, const int* send_counts, const int* send_displs, float* recv,
                 const int* recv_counts, const int* recv_displs) const;
  /// Root's values to every rank.
  void broadcast(std::span<float> data, int root = 0) const;
  void broadcast(std::span<double> data, int root = 0) const;
  void broadcast(std::span<int64_t> data, int root = 0) const;
  void broadcast(std::string& text, int root = 0) const;
  /// Ends every rank of the job at once with `code` (for errors only some ranks saw).
  [[noreturn]] void abort(int code) const;
  /// True when every rank calls this within `seconds` of each other; false when some rank did
  /// not come. For error paths: it waits on a communicator of its own, so ranks that are stuck
  /// in another collective neither block it nor get confused by it.
  bool all_arrive_within(double seconds) const;

  /// Runs fn on every rank. If it throws on any rank, every rank throws the same collective
  /// Error: the one of the lowest failing rank, naming that rank unless all ranks failed.
  template <class F>
  void agree(F&& fn) const {
    const std::optional<Error> failure = failure_of(fn);
    raise_first_failure(failure ? &*failure : nullptr);
  }

  /// Runs fn on rank 0 alone, for what rank 0 does or checks on everyone's behalf (writing a
  /// checkpoint, the file system as it sees it). If it throws, every rank throws the same
  /// collective Error, which names no rank.
  template <class F>
  void root_decides(F&& fn) const {
    const std::optional<Error> failure = rank() == 0 ? failure_of(fn) : std::nullopt;
    raise_root_failure(failure ? &*failure : nullptr);
  }

  /// The MPI_Comm, for HDF5's MPI-IO driver: `*static_cast<const MPI_Comm*>(native())`.
  const void* native() const;

 private:
  struct Impl;
  explicit Comm(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  // What fn threw, as an Error (anything else becomes ExitCode::other).
  template <class F>
  static std::optional<Error> failure_of(F& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e;
    } catch (const std::exception& e) {
      return Error(ExitCode::other, e.what());
    }
    return std::nullopt;
  }
  void raise_first_failure(const Error* local) const;
  void raise_root_failure(const Error* root) const;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace aetrain
