// The one exception type, carrying the documented exit code.
#pragma once

#include <stdexcept>
#include <string>

namespace aetrain {

/// Exit codes of `aetrain` (README, "Faults and exit codes"; docs/faults.md).
enum class ExitCode : int {
  ok = 0,
  other = 1,
  usage = 2,         // bad command line or configuration
  data = 3,          // bad input data
  checkpoint = 4,    // bad or missing checkpoint
  diverged = 5,      // non-finite loss
  write_failed = 6,  // an output could not be written (a full disk, a failed device)
  preempted = 75,    // stopped by a signal after writing a checkpoint
};

/// An error with context, turned by main into one `aetrain: error:` line and an exit code.
/// `collective` means every rank threw the same error (so rank 0 alone reports it).
class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& what, bool collective = false)
      : std::runtime_error(what), code_(code), collective_(collective) {}
  ExitCode code() const { return code_; }
  bool collective() const { return collective_; }

 private:
  ExitCode code_;
  bool collective_;
};

/// Throws an error that the caller asserts every rank throws alike, at this point, because the
/// condition depends only on values that every rank holds alike: the command line, the results
/// of collectives, the replicated weights. Rank 0 alone reports it. A condition that only some
/// ranks can see (their own rows, their own file system) belongs in Comm::agree instead; if a
/// rank throws this alone, main notices that the others never join it and says so (loudly,
/// naming the rank) instead of leaving them waiting.
[[noreturn]] inline void fail_replicated(ExitCode code, const std::string& what) {
  throw Error(code, what, /*collective=*/true);
}

}  // namespace aetrain
