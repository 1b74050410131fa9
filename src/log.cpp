#include "aetrain/log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>

namespace aetrain {
namespace {

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace

Json& Json::raw(const std::string& key, const std::string& json) {
  if (!body_.empty()) body_ += ", ";
  body_ += quoted(key) + ": " + json;
  return *this;
}

Json& Json::add(const std::string& key, const std::string& value) {
  return raw(key, quoted(value));
}

namespace {

std::string number(double value) {
  if (!std::isfinite(value)) return "null";  // JSON has no NaN
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);  // shortest exact form
  return std::string(buf, end);
}

}  // namespace

Json& Json::add(const std::string& key, double value) { return raw(key, number(value)); }

Json& Json::add(const std::string& key, const std::vector<double>& value) {
  std::string s = "[";
  for (size_t i = 0; i < value.size(); ++i) s += (i ? ", " : "") + number(value[i]);
  return raw(key, s + "]");
}

Json& Json::add(const std::string& key, const std::vector<std::string>& value) {
  std::string s = "[";
  for (size_t i = 0; i < value.size(); ++i) s += (i ? ", " : "") + quoted(value[i]);
  return raw(key, s + "]");
}

Json& Json::add(const std::string& key, int64_t value) { return raw(key, std::to_string(value)); }
Json& Json::add(const std::string& key, bool value) { return raw(key, value ? "true" : "false"); }

Json& Json::add(const std::string& key, const std::vector<int64_t>& value) {
  std::string s = "[";
  for (size_t i = 0; i < value.size(); ++i) s += (i ? ", " : "") + std::to_string(value[i]);
  return raw(key, s + "]");
}

Json& Json::add(const std::string& key, const Json& value) { return raw(key, value.str()); }

Json& Json::add(const std::string& key, const std::vector<Json>& value) {
  std::string s = "[";
  for (size_t i = 0; i < value.size(); ++i) s += (i ? ", " : "") + value[i].str();
  return raw(key, s + "]");
}

const char* phase_name(Phase p) {
  static const char* names[kPhaseCount] = {"data",      "forward", "backward",
                                           "allreduce", "update",  "checkpoint"};
  return names[size_t(p)];
}

namespace {

// {"min", "avg", "max", "sum"} over ranks of every value, in three collectives whatever their
// number.
template <size_t N>
std::array<Json, N> spreads(std::array<double, N> values, const Comm& comm) {
  std::array<double, N> lo = values, hi = values;
  comm.allreduce_min(lo);
  comm.allreduce_max(hi);
  comm.allreduce_sum(std::span<double>(values));
  std::array<Json, N> out;
  for (size_t i = 0; i < N; ++i)
    out[i]
        .add("min", lo[i])
        .add("avg", values[i] / comm.size())
        .add("max", hi[i])
        .add("sum", values[i]);
  return out;
}

}  // namespace

Json spread(double value, const Comm& comm) { return spreads<1>({value}, comm)[0]; }

Json Timers::summary(const Comm& comm) const {
  const std::array<Json, kPhaseCount> s = spreads(seconds_, comm);
  Json all;
  for (size_t p = 0; p < kPhaseCount; ++p) all.add(phase_name(Phase(p)), s[p]);
  return all;
}

Log::Log(const Comm& comm, bool quiet)
    // mpirun hands every rank a pseudo-terminal as stdout, even in a batch job, but a pipe as
    // stderr: only both together mean a person is watching.
    : comm_(comm),
      root_(comm.rank() == 0),
      quiet_(quiet),
      terminal_(root_ && isatty(STDOUT_FILENO) && isatty(STDERR_FILENO)) {}

Log::~Log() {
  if (metrics_fd_ >= 0) ::close(metrics_fd_);
  if (metrics_fd_ >= 0 && unwritten_ && created_) ::unlink(metrics_path_.c_str());
}

void Log::open_metrics(const std::string& path, bool append, const Comm& comm) {
  comm.root_decides([&] {
    // A new run's file is emptied by its first line, not now: a run refused before it (a bad
    // row found while reading) leaves the file as it was, and removes one it created.
    struct stat st {};
    created_ = ::stat(path.c_str(), &st) != 0;
    unwritten_ = !append;
    metrics_fd_ =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : 0), 0666);
    if (metrics_fd_ < 0)
      throw Error(ExitCode::usage, path + ": cannot open the metrics file for writing (" +
                                       std::strerror(errno) + ")");
  });
  metrics_open_ = true;
  metrics_path_ = path;
}

void Log::line(const std::string& text) {
  if (!root_ || quiet_) return;
  if (redrawing_) std::cout << '\n';
  redrawing_ = false;
  std::cout << text << std::endl;
}

void Log::progress(const std::string& text) {
  if (!root_ || quiet_ || !terminal_) return;  // batch jobs get the per-epoch lines only
  std::cout << "\r\033[K" << text << std::flush;
  redrawing_ = true;
}

void Log::result(const std::string& text) {
  if (!root_) return;
  if (redrawing_) std::cout << '\n';
  redrawing_ = false;
  std::cout << text << std::endl;
}

void Log::warn(const std::string& text) {
  if (!root_) return;
  if (redrawing_) std::cout << std::endl;
  redrawing_ = false;
  std::cerr << "aetrain: warning: " + text + "\n" << std::flush;  // one write, one line
}

void Log::metric(const Json& object) {
  if (!metrics_open_) return;
  comm_.root_decides([&] {
    const std::string line = object.str() + '\n';
    struct stat st;
    // Emptied by the first line (a regular file: not /dev/null or a pipe).
    if (unwritten_ && ::fstat(metrics_fd_, &st) == 0 && S_ISREG(st.st_mode) &&
        ::ftruncate(metrics_fd_, 0) != 0)
      throw Error(ExitCode::write_failed,
                  metrics_path_ + ": cannot write the metrics: " + std::strerror(errno));
    unwritten_ = false;
    const off_t before = ::fstat(metrics_fd_, &st) == 0 ? st.st_size : -1;
    for (size_t done = 0; done < line.size();) {
      const ssize_t n = ::write(metrics_fd_, line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const std::string why = std::strerror(n == 0 ? ENOSPC : errno);
        if (before >= 0) (void)::ftruncate(metrics_fd_, before);  // no torn line at the end
        throw Error(ExitCode::write_failed, metrics_path_ + ": cannot write the metrics: " + why +
                                                " (the lines written before are kept)");
      }
      done += size_t(n);
    }
  });
}

std::string shortest(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

}  // namespace aetrain
