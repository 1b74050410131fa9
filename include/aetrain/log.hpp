// Rank-0 output: console lines, progress, the metrics file (JSON Lines), phase timers.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "aetrain/comm.hpp"

namespace aetrain {

/// One JSON object, built key by key: Json().add("event", "step").add("loss", 0.5).str().
class Json {
 public:
  Json& add(const std::string& key, const std::string& value);
  Json& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  Json& add(const std::string& key, double value);
  Json& add(const std::string& key, int64_t value);
  Json& add(const std::string& key, int value) { return add(key, int64_t(value)); }
  Json& add(const std::string& key, bool value);
  Json& add(const std::string& key, const std::vector<int64_t>& value);
  Json& add(const std::string& key, const std::vector<double>& value);
  Json& add(const std::string& key, const std::vector<std::string>& value);
  Json& add(const std::string& key, const Json& value);
  Json& add(const std::string& key, const std::vector<Json>& value);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  Json& raw(const std::string& key, const std::string& json);
  std::string body_;
};

/// {"min": .., "avg": .., "max": .., "sum": ..} of each rank's `value`. Collective.
Json spread(double value, const Comm& comm);

/// The phases of a training step, timed on every rank.
enum class Phase { data, forward, backward, allreduce, update, checkpoint };
constexpr size_t kPhaseCount = 6;
const char* phase_name(Phase p);

/// Seconds spent per phase on this rank; summarized as min/avg/max over ranks.
class Timers {
 public:
  using Clock = std::chrono::steady_clock;
  /// Adds the time since `since` to phase p and returns now.
  Clock::time_point lap(Phase p, Clock::time_point since) {
    const Clock::time_point now = Clock::now();
    seconds_[size_t(p)] += std::chrono::duration<double>(now - since).count();
    return now;
  }
  /// {"data": {"min":..,"avg":..,"max":..}, ...}. Collective.
  Json summary(const Comm& comm) const;

 private:
  std::array<double, kPhaseCount> seconds_{};
};

/// A number as a person reads it in a message: printf's %g (0.001, 1e-06, 250).
std::string shortest(double value);

/// Seconds from `since` to now.
inline double seconds_since(Timers::Clock::time_point since) {
  return std::chrono::duration<double>(Timers::Clock::now() - since).count();
}

/// Console and metrics output; only rank 0 writes anything.
class Log {
 public:
  Log(const Comm& comm, bool quiet);
  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;
  /// Starts (or, when `append`, continues) the metrics file on rank 0. Collective; throws
  /// Error(usage) when the file cannot be opened. A new run's file is emptied by its first
  /// line; without one (a run that fails first) it stays as it was, or goes if it was created.
  void open_metrics(const std::string& path, bool append, const Comm& comm);

  bool root() const { return root_; }
  /// A line on stdout, unless quiet.
  void line(const std::string& text);
  /// A progress line, redrawn in place on a terminal; nothing in a batch job or when quiet.
  void progress(const std::string& text);
  /// A command's result on stdout, even when quiet.
  void result(const std::string& text);
  /// "aetrain: warning: ..." on stderr, even when quiet.
  void warn(const std::string& text);
  /// One JSON object as a line of the metrics file. Collective when a metrics file is open: a
  /// line that cannot be written (a full disk) is Error(write_failed) on every rank, and the
  /// file keeps the lines written before it.
  void metric(const Json& object);

 private:
  Comm comm_;
  bool root_, quiet_, terminal_;
  bool redrawing_ = false;     // a progress line is on screen without its newline
  bool metrics_open_ = false;  // on every rank
  int metrics_fd_ = -1;        // rank 0's
  bool created_ = false;       // rank 0 created the file
  bool unwritten_ = false;     // a new run's file, not emptied yet: no line written
  std::string metrics_path_;
};

}  // namespace aetrain
