// Named fault points, so that tests can kill, corrupt or fail a run at a precise moment.
//
// AETRAIN_FAULT=POINT[@RANK][:N] arms one point: the N-th time (default: first) rank RANK
// (default: any) reaches it, fault(POINT) returns true and the caller misbehaves as the point
// says (for example, raise SIGKILL between writing a checkpoint and renaming it). Unset, every
// point costs one predictable branch.
#pragma once

#include <string_view>

namespace aetrain {

/// Reads AETRAIN_FAULT once, for this rank.
void arm_faults(int rank);

namespace detail {
extern bool faults_armed;
bool fault_hit(std::string_view point);
}  // namespace detail

/// True when the armed fault is this point, this rank and this occurrence.
inline bool fault(std::string_view point) {
  return detail::faults_armed && detail::fault_hit(point);
}

}  // namespace aetrain
