// Output files: whether a path can be written, and publishing a finished file under its name.
#pragma once

#include <functional>
#include <string>

#include "aetrain/comm.hpp"

namespace aetrain {

/// Why a file could not be created at `path` (its directory is missing or not writable, found
/// by creating and removing a probe file), or "" when it could.
std::string unwritable_reason(const std::string& path);
/// Refuses, on every rank (Error(usage)), an output path that rank 0 could not create.
void require_writable(const std::string& path, const Comm& comm);

/// Makes the finished file `tmp` appear as `path`, atomically and durably: its bytes reach the
/// disk (fsync) before the rename, and the rename itself (fsync of the directory) after it, so
/// a crash at any moment leaves the old file at `path` or the new one, never a torn one.
/// `before_rename` runs just before the rename (checkpoints keep the file they replace). One
/// process. Throws std::runtime_error naming both paths when the rename fails (`tmp` is
/// removed).
void publish_file(const std::string& tmp, const std::string& path,
                  const std::function<void()>& before_rename = {});

}  // namespace aetrain
