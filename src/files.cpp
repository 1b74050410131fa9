#include "aetrain/files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "aetrain/error.hpp"

namespace aetrain {
namespace {

// Makes a file's (or a directory's entries') bytes durable.
void sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

std::string unwritable_reason(const std::string& path) {
  const std::filesystem::path dir = std::filesystem::absolute(path).parent_path();
  if (!std::filesystem::is_directory(dir)) return "directory " + dir.string() + " does not exist";
  const std::string probe = (dir / (".aetrain-probe-" + std::to_string(getpid()))).string();
  const int fd = open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0)
    return "cannot create files in directory " + dir.string() + " (" + std::strerror(errno) + ")";
  close(fd);
  unlink(probe.c_str());
  return "";
}

void require_writable(const std::string& path, const Comm& comm) {
  comm.root_decides([&] {
    if (const std::string why = unwritable_reason(path); !why.empty())
      throw Error(ExitCode::usage, path + ": " + why);
  });
}

void publish_file(const std::string& tmp, const std::string& path,
                  const std::function<void()>& before_rename) {
  sync_path(tmp);
  if (before_rename) before_rename();
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot rename " + tmp + " to " + path + " (" + why + ")");
  }
  sync_path(std::filesystem::absolute(path).parent_path().string());
}

}  // namespace aetrain
