#include "aetrain/comm.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

namespace aetrain {
namespace {

// Large allreduces go in pieces: Open MPI's temporary buffers of 32 MiB and more are mmap'ed
// per call, which costs more than the reduction itself (see the platform notes).
constexpr size_t kMaxAllreduceBytes = size_t(8) << 20;

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype mpi_type<int64_t>() {
  return MPI_INT64_T;
}
template <>
MPI_Datatype mpi_type<uint32_t>() {
  return MPI_UINT32_T;
}
template <>
MPI_Datatype mpi_type<char>() {
  return MPI_CHAR;
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw Error(ExitCode::other, std::string(what) + " failed: " + std::string(text, len));
  }
}

}  // namespace

struct Comm::Impl {
  MPI_Comm comm;
  MPI_Comm arrivals;  // all_arrive_within's own: no other call may ever match its barrier
  int rank = 0, size = 1, ranks_on_node = 1, nodes = 1;
  mutable std::vector<int> displs;  // allgather's displacements, one per rank

  explicit Impl(MPI_Comm c) : comm(c) {
    MPI_Comm_dup(comm, &arrivals);
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    MPI_Comm node;
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    int node_rank = 0;
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_size(node, &ranks_on_node);
    MPI_Comm_free(&node);
    int leader = node_rank == 0 ? 1 : 0;
    MPI_Allreduce(&leader, &nodes, 1, MPI_INT, MPI_SUM, comm);
    displs.resize(size_t(size));
  }

  template <class T>
  void allreduce(std::span<T> data, MPI_Op op) const {
    const size_t chunk = kMaxAllreduceBytes / sizeof(T);
    for (size_t i = 0; i < data.size(); i += chunk) {
      const int count = int(std::min(chunk, data.size() - i));
      check(MPI_Allreduce(MPI_IN_PLACE, data.data() + i, count, mpi_type<T>(), op, comm),
            "MPI_Allreduce");
    }
  }

  template <class T>
  void broadcast(std::span<T> data, int root) const {
    const size_t chunk = kMaxAllreduceBytes / sizeof(T);
    for (size_t i = 0; i < data.size(); i += chunk) {
      const int count = int(std::min(chunk, data.size() - i));
      check(MPI_Bcast(data.data() + i, count, mpi_type<T>(), root, comm), "MPI_Bcast");
    }
  }
};

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0, version = 0, subversion = 0;
  MPI_Get_library_version(text, &length);
  MPI_Get_version(&version, &subversion);
  std::string library(text, size_t(length));
  library = library.substr(0, library.find_first_of(",\n"));  // "Open MPI v4.1.4, package: ..."
  return library + " (MPI " + std::to_string(version) + "." + std::to_string(subversion) + ")";
}

MpiSession::MpiSession(int& argc, char**& argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  // Errors come back as codes (and become exceptions) instead of aborting inside MPI.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

Comm Comm::world() {
  static const auto impl = std::make_shared<const Impl>(MPI_COMM_WORLD);
  return Comm(impl);
}

Comm Comm::self() {
  static const auto impl = std::make_shared<const Impl>(MPI_COMM_SELF);
  return Comm(impl);
}

int Comm::rank() const { return impl_->rank; }
int Comm::size() const { return impl_->size; }
int Comm::ranks_on_node() const { return impl_->ranks_on_node; }
int Comm::nodes() const { return impl_->nodes; }
const void* Comm::native() const { return &impl_->comm; }

void Comm::allreduce_sum(std::span<float> data) const { impl_->allreduce(data, MPI_SUM); }
void Comm::allreduce_sum(std::span<double> data) const { impl_->allreduce(data, MPI_SUM); }
void Comm::reduce_scatter_sum(std::span<const int64_t> send, std::span<int64_t> recv,
                              std::span<const int> counts) const {
  check(MPI_Reduce_scatter(send.data(), recv.data(), counts.data(), mpi_type<int64_t>(), MPI_SUM,
                           impl_->comm),
        "MPI_Reduce_scatter");
}
void Comm::allgather(std::span<float> data, std::span<const int> counts) const {
  int* displs = impl_->displs.data();
  for (int r = 0, at = 0; r < size(); at += counts[size_t(r)], ++r) displs[r] = at;
  check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data.data(), counts.data(), displs,
                       MPI_FLOAT, impl_->comm),
        "MPI_Allgatherv");
}
void Comm::allreduce_min(std::span<double> data) const { impl_->allreduce(data, MPI_MIN); }
void Comm::allreduce_max(std::span<double> data) const { impl_->allreduce(data, MPI_MAX); }
void Comm::allreduce_max(std::span<uint32_t> data) const { impl_->allreduce(data, MPI_MAX); }
void Comm::alltoallv(const float* send, const int* send_counts, const int* send_displs, float* recv,
                     const int* recv_counts, const int* recv_displs) const {
  check(MPI_Alltoallv(send, send_counts, send_displs, MPI_FLOAT, recv, recv_counts, recv_displs,
                      MPI_FLOAT, impl_->comm),
        "MPI_Alltoallv");
}

void Comm::broadcast(std::span<float> data, int root) const { impl_->broadcast(data, root); }
void Comm::broadcast(std::span<double> data, int root) const { impl_->broadcast(data, root); }
void Comm::broadcast(std::span<int64_t> data, int root) const { impl_->broadcast(data, root); }

void Comm::broadcast(std::string& text, int root) const {
  int64_t length = int64_t(text.size());
  broadcast(std::span<int64_t>(&length, 1), root);
  text.resize(size_t(length));
  impl_->broadcast(std::span<char>(text.data(), text.size()), root);
}

void Comm::abort(int code) const {
  MPI_Abort(impl_->comm, code);
  std::exit(code);  // not reached
}

bool Comm::all_arrive_within(double seconds) const {
  MPI_Request request;
  check(MPI_Ibarrier(impl_->arrivals, &request), "MPI_Ibarrier");
  const double deadline = MPI_Wtime() + seconds;
  int done = 0;
  while (true) {
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done || MPI_Wtime() > deadline) return done != 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Comm::raise_root_failure(const Error* root) const {
  int64_t code = root ? int64_t(root->code()) : 0;
  broadcast(std::span<int64_t>(&code, 1));
  if (code == 0) return;
  std::string what = root ? root->what() : std::string();
  broadcast(what);
  throw Error(ExitCode(code), what, /*collective=*/true);
}

void Comm::raise_first_failure(const Error* local) const {
  // [first failing rank, number of failing ranks] over all ranks.
  int first = local ? rank() : size(), failing = local ? 1 : 0;
  check(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, impl_->comm), "MPI_Allreduce");
  if (first == size()) return;
  check(MPI_Allreduce(MPI_IN_PLACE, &failing, 1, MPI_INT, MPI_SUM, impl_->comm), "MPI_Allreduce");
  int64_t code = local ? int64_t(local->code()) : 0;
  std::string what = local ? local->what() : std::string();
  broadcast(std::span<int64_t>(&code, 1), first);
  broadcast(what, first);
  if (failing < size() && size() > 1) what = "rank " + std::to_string(first) + ": " + what;
  throw Error(ExitCode(code), what, /*collective=*/true);
}

}  // namespace aetrain
