#include "aetrain/outputs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "aetrain/checkpoint.hpp"
#include "aetrain/error.hpp"
#include "aetrain/fault.hpp"
#include "h5.hpp"

namespace aetrain {
namespace fs = std::filesystem;
namespace {

// What is at a path, as far as outputs care.
enum class Found {
  none,   // nothing
  empty,  // an empty file: nothing to lose
  directory,
  special,     // not a regular file (a device, a pipe)
  checkpoint,  // an aetrain training checkpoint
  model,       // an aetrain model without training state
  pca,         // an aetrain PCA model
  hdf5,        // any other HDF5 file
  metrics,     // aetrain metrics
  other,       // a file that is none of these
};

// What is there, for messages: "an aetrain PCA model".
std::string what(Found f) {
  switch (f) {
    case Found::none: return "nothing";
    case Found::empty: return "an empty file";
    case Found::directory: return "a directory";
    case Found::special: return "a file that is not a regular file";
    case Found::checkpoint: return "an aetrain training checkpoint";
    case Found::model: return "an aetrain model without training state";
    case Found::pca: return "an aetrain PCA model";
    case Found::hdf5: return "an HDF5 file";
    case Found::metrics: return "an aetrain metrics file";
    case Found::other: return "neither an HDF5 file nor aetrain metrics";
  }
  return "";
}

// What may be at an output's path, for messages.
std::string allowed(FileKind kind) {
  switch (kind) {
    case FileKind::checkpoint: return "only an aetrain training checkpoint may be replaced there";
    case FileKind::pca_model: return "only an aetrain PCA model may be replaced there";
    case FileKind::metrics: return "only aetrain metrics may be replaced there";
    case FileKind::data:
      return "datasets go only into an HDF5 file that is no aetrain checkpoint or model";
    case FileKind::scratch: return "a file is written there";
  }
  return "";
}

// The first line of a file is a JSON object with an "event" key (what Log writes first).
bool metrics_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  line.resize(1 << 16);
  in.read(line.data(), std::streamsize(line.size()));
  line.resize(size_t(in.gcount()));
  line = line.substr(0, line.find('\n'));
  const size_t open = line.find_first_not_of(" \t\r");
  if (open == std::string::npos || line[open] != '{') return false;
  for (size_t at = line.find("\"event\""); at != std::string::npos;
       at = line.find("\"event\"", at + 1)) {
    const size_t colon = line.find_first_not_of(" \t", at + 7);
    if (colon != std::string::npos && line[colon] == ':') return true;
  }
  return false;
}

Found look(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Found::none;
  if (S_ISDIR(st.st_mode)) return Found::directory;
  if (!S_ISREG(st.st_mode)) return Found::special;
  if (st.st_size == 0) return Found::empty;
  if (h5::is_hdf5(path)) {
    try {
      const h5::Handle file = h5::open_file(path);
      const h5::Handle root = h5::open_group(file, "/");
      const std::string format =
          h5::has_attribute(root, "format") ? h5::read_string_attribute(root, "format") : "";
      if (format == kCheckpointFormat)
        return h5::exists(file, "/optimizer") && h5::exists(file, "/train") ? Found::checkpoint
                                                                            : Found::model;
      if (format == kPcaFormat) return Found::pca;
    } catch (const h5::Failure&) {
      // Unreadable as HDF5 beyond its signature: no aetrain file, at least.
    }
    return Found::hdf5;
  }
  return metrics_lines(path) ? Found::metrics : Found::other;
}

// Whether what is there may be replaced by (or, for data, receive) an output of `kind`.
bool fits(Found found, FileKind kind) {
  if (found == Found::none || found == Found::empty) return true;
  switch (kind) {
    case FileKind::checkpoint: return found == Found::checkpoint;
    case FileKind::pca_model: return found == Found::pca;
    // A stream (/dev/null, a pipe) loses nothing either.
    case FileKind::metrics: return found == Found::metrics || found == Found::special;
    case FileKind::data: return found == Found::hdf5;
    case FileKind::scratch: return found != Found::directory;
  }
  return false;
}

// One file on rank 0's view: where it is and which file it is.
struct Identity {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  std::string canonical;  // the normalized absolute path (symbolic links of directories resolved)
};

Identity identify(const std::string& path) {
  Identity id;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    id.exists = true;
    id.dev = st.st_dev;
    id.ino = st.st_ino;
  }
  std::error_code ec;
  const fs::path canonical = fs::weakly_canonical(fs::absolute(path), ec);
  id.canonical = (ec ? fs::absolute(path).lexically_normal() : canonical).string();
  return id;
}

bool same_file(const Identity& a, const Identity& b) {
  if (a.exists && b.exists) return a.dev == b.dev && a.ino == b.ino;
  return !a.exists && !b.exists && a.canonical == b.canonical;
}

// The files there that an output path holding "<N>" stands for.
std::vector<std::string> expand(const std::string& path) {
  const size_t at = path.find("<N>");
  if (at == std::string::npos) return {path};
  const fs::path dir = fs::path(path).parent_path();
  const std::string name = fs::path(path).filename().string();
  const size_t n_at = name.find("<N>");
  const std::string prefix = name.substr(0, n_at), suffix = name.substr(n_at + 3);
  std::vector<std::string> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir.empty() ? "." : dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.size() <= prefix.size() + suffix.size() || n.compare(0, prefix.size(), prefix) != 0 ||
        n.compare(n.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string digits = n.substr(prefix.size(), n.size() - prefix.size() - suffix.size());
    if (digits.find_first_not_of("0123456789") == std::string::npos)
      out.push_back((dir / n).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

[[noreturn]] void refuse(const std::string& path, const std::string& option,
                         const std::string& why) {
  throw Error(ExitCode::usage, path + " (" + option + "): " + why);
}

// The remedy for a file of an output's own kind that the run may not replace.
std::string replace_remedy(const OutputPlan& plan, FileKind kind) {
  if (!plan.resumable) return "pass --overwrite to replace it, or choose another file";
  if (plan.resume && kind == FileKind::checkpoint)
    return "--resume continues only a run whose --checkpoint is there; pass --overwrite to start "
           "a new run over it, or choose another --checkpoint path";
  return "pass --resume to continue that run, --overwrite to start a new run over it, or choose "
         "another path";
}

void check_on_root(const OutputPlan& plan) {
  struct Seen {
    const Output* output;
    std::string path;
    Identity id;
  };
  std::vector<std::pair<const Input*, Identity>> inputs;
  for (const Input& input : plan.inputs) inputs.emplace_back(&input, identify(input.path));
  // --resume goes on with the run whose checkpoint (the first checkpoint output) is there; what
  // that file holds, the resume itself reads and checks (a bad checkpoint is exit 4).
  // Every output written as FILE.tmp and renamed brings its scratch file along.
  std::vector<Output> outputs;
  for (const Output& o : plan.outputs) {
    outputs.push_back(o);
    const bool renamed =
        o.kind == FileKind::checkpoint || o.kind == FileKind::pca_model || o.kind == FileKind::data;
    if (renamed && o.path.find("<N>") == std::string::npos)
      outputs.push_back({o.option + "'s scratch file", o.path + ".tmp", FileKind::scratch});
  }
  const Output* resumed = nullptr;
  for (const Output& o : outputs)
    if (o.kind == FileKind::checkpoint) {
      if (plan.resume) resumed = &o;
      break;
    }
  const bool continuing = resumed && look(resumed->path) != Found::none;
  std::map<std::string, std::string> directories;  // checked once each: directory -> why not
  std::vector<Seen> seen;
  for (const Output& o : outputs) {
    for (const std::string& path : expand(o.path)) {
      const Found found = look(path);
      // A stream written in place (/dev/null) needs no new file in its directory.
      if (found != Found::special) {
        const std::string dir = fs::absolute(path).parent_path().string();
        if (!directories.count(dir)) directories[dir] = unwritable_reason(path);
        if (!directories[dir].empty()) refuse(path, o.option, directories[dir]);
      }
      const Identity id = identify(path);
      for (const auto& [input, input_id] : inputs) {
        if (!id.exists || !input_id.exists || !same_file(id, input_id)) continue;
        const std::string same =
            input->path == path ? std::string("this run reads it")
                                : "is the same file as " + input->path + ", which this run reads";
        refuse(path, o.option,
               same + " (" + input->option + "); writing it would destroy it: " +
                   (o.kind == FileKind::data
                        ? "write to another file (an HDF5 external link can make the output "
                          "appear beside the data)"
                        : "choose another file"));
      }
      for (const Seen& other : seen)
        if (same_file(id, other.id))
          refuse(path, o.option,
                 "is also the file of " + other.output->option +
                     (other.path == path ? std::string() : " (" + other.path + ")") +
                     "; each output needs a file of its own");
      seen.push_back({&o, path, id});
      if (&o == resumed) continue;
      if (!fits(found, o.kind))
        refuse(path, o.option,
               "is " + what(found) + "; " + allowed(o.kind) + ": not touching it, choose another " +
                   (found == Found::directory ? "path" : "file"));
      if (found == Found::none || found == Found::empty || found == Found::special ||
          o.kind == FileKind::data || o.kind == FileKind::scratch || plan.overwrite)
        continue;
      if (plan.resume && (continuing || o.kind == FileKind::metrics)) continue;
      refuse(path, o.option, what(found) + " is already there; " + replace_remedy(plan, o.kind));
    }
  }
}

}  // namespace

void OutputPlan::read(const std::string& option, const Sources& data) {
  for (const std::string& path : data.inputs) inputs.push_back({option, path});
}

void OutputPlan::read(const std::string& option, const std::string& path) {
  if (!path.empty()) inputs.push_back({option, path});
}

void check_outputs(const OutputPlan& plan, const Comm& comm) {
  if (plan.resumable && plan.resume && plan.overwrite)
    fail_replicated(ExitCode::usage,
                    "--resume continues the run in --checkpoint and --overwrite starts a new run "
                    "over it: pass one of them");
  comm.root_decides([&] { check_on_root(plan); });
}

OutputPlan train_outputs(const TrainConfig& c, const Sources& data, const Sources* val) {
  OutputPlan plan;
  plan.overwrite = c.overwrite;
  plan.resumable = true;
  plan.resume = c.resume;
  if (!c.checkpoint.empty()) {
    plan.outputs.push_back({"--checkpoint", c.checkpoint, FileKind::checkpoint});
    if (c.early_stop > 0)
      plan.outputs.push_back(
          {"--early-stop's best model", c.checkpoint + ".best", FileKind::checkpoint});
    if (c.keep > 1)
      plan.outputs.push_back({"--keep's copies", c.checkpoint + ".step<N>", FileKind::checkpoint});
  }
  if (!c.metrics.empty()) plan.outputs.push_back({"--metrics", c.metrics, FileKind::metrics});
  plan.read("--data", data);
  if (val) plan.read("--val-data", *val);
  plan.read("--init-from", c.init_from);
  plan.read("--config", c.config_file);
  return plan;
}

void remove_previous_run(const TrainConfig& c, const Comm& comm) {
  if (!c.overwrite || c.checkpoint.empty()) return;
  comm.root_decides([&] {
    std::vector<std::string> old = expand(c.checkpoint + ".step<N>");
    old.push_back(c.checkpoint + ".best");
    old.push_back(c.checkpoint);
    for (const std::string& path : old)
      if (look(path) == Found::checkpoint) std::remove(path.c_str());
  });
}

bool holds(const std::string& path, FileKind kind) {
  const Found found = look(path);
  return found != Found::none && found != Found::empty && fits(found, kind);
}

std::string unwritable_reason(const std::string& path) {
  const fs::path dir = fs::absolute(path).parent_path();
  if (!fs::is_directory(dir)) return "directory " + dir.string() + " does not exist";
  const std::string probe = (dir / (".aetrain-probe-" + std::to_string(getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return "cannot create files in directory " + dir.string() + " (" + std::strerror(errno) + ")";
  ::close(fd);
  ::unlink(probe.c_str());
  return "";
}

namespace {

// Makes a file's bytes (or a directory's entries) durable; false with errno on failure.
bool sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0 || errno == EINVAL;  // EINVAL: cannot sync this kind of file
  const int saved = errno;
  ::close(fd);
  errno = saved;
  return ok;
}

[[noreturn]] void fail_with_errno() { throw WriteFailure(std::strerror(errno)); }

}  // namespace

void write_new_file(const std::string& path, std::string_view bytes,
                    const std::function<void(size_t)>& progress) {
  ::unlink(path.c_str());  // a scratch file of an earlier run, or a link: never written through
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) fail_with_errno();
  const auto give_up = [&] {
    const int saved = errno;
    ::close(fd);
    ::unlink(path.c_str());
    errno = saved;
    fail_with_errno();
  };
  if (progress) progress(0);
  // Pieces of at most 16 MiB, and at least two (so that a file has a middle to fail in).
  const size_t piece =
      std::max<size_t>(1, std::min<size_t>(size_t(16) << 20, (bytes.size() + 1) / 2));
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, std::min(piece, bytes.size() - written));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;  // a write that makes no progress
      give_up();
    }
    written += size_t(n);
    if (progress) progress(written);
  }
  if (::fsync(fd) != 0) give_up();
  if (::close(fd) != 0) {  // network file systems report write errors here
    const int saved = errno;
    ::unlink(path.c_str());
    errno = saved;
    fail_with_errno();
  }
}

void reserve_space(const std::string& path, int64_t bytes) {
  // A file system that cannot reserve space (for tests of what happens then).
  if (fault("reserve-unsupported")) return;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail_with_errno();
  struct stat st;
  int rc = ::fstat(fd, &st);
  if (rc == 0 && bytes > 0) rc = ::fallocate(fd, FALLOC_FL_KEEP_SIZE, st.st_size, bytes);
  const int saved = errno;
  ::close(fd);
  if (rc == 0) return;
  if (saved == EOPNOTSUPP || saved == ENOSYS) return;  // this file system cannot reserve space
  release_space(path);                                 // what a failed reservation may have kept
  errno = saved;
  fail_with_errno();
}

void release_space(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode))
    (void)::truncate(path.c_str(), st.st_size);  // to its own size: what lies past it goes
}

void publish_file(const std::string& tmp, const std::string& path,
                  const std::function<void()>& before_rename) {
  if (!sync_path(tmp)) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw WriteFailure(why);
  }
  if (before_rename) before_rename();
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw WriteFailure("cannot rename " + tmp + " to " + path + " (" + why + ")");
  }
  sync_path(fs::absolute(path).parent_path().string());
}

}  // namespace aetrain
