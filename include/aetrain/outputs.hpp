// Output files: the one rule that every command's outputs follow (checked on rank 0 before any
// work), and the steps of writing a file so that a failure, a full disk or a kill at any moment
// leaves what was there before.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/sources.hpp"

namespace aetrain {

/// What an output writes, and so what a file already at its path must be.
enum class FileKind {
  checkpoint,  // an aetrain training checkpoint (train's --checkpoint, .best, .step<N>)
  pca_model,   // an aetrain PCA model (pca --out)
  metrics,     // aetrain metrics: JSON Lines, the first line an object with an "event" key
  data,        // an HDF5 file that outputs are added to as datasets (encode, evaluate)
  scratch,     // aetrain's name for a file being written (FILE.tmp): replaced unless read
};

/// One file a command writes: the option that names it, its path, the kind of file it writes.
/// A path whose file name holds "<N>" stands for every file there with a number in its place
/// (the CHECKPOINT.step<N> copies of --keep). Checkpoints, PCA models and data files are
/// written as PATH.tmp and renamed: that scratch file is checked with them.
struct Output {
  std::string option;
  std::string path;
  FileKind kind;
};

/// One file a command reads: the option that names it and its path.
struct Input {
  std::string option;
  std::string path;
};

/// What a run writes and reads, and what it may do to files of its outputs' kinds already there.
struct OutputPlan {
  std::vector<Output> outputs;
  std::vector<Input> inputs;
  bool overwrite = false;  // --overwrite: such files are replaced
  bool resumable = false;  // the command has --resume (train)
  bool resume = false;     // --resume: the run of the first checkpoint output, if there, goes on

  /// Adds the files that reading `data` opens (its Sources::inputs), as read through `option`.
  void read(const std::string& option, const Sources& data);
  /// Adds one file read through `option` (nothing for an empty path).
  void read(const std::string& option, const std::string& path);
};

/// Checks every output of `plan` against the files there, on rank 0, before any work. Every
/// rank throws the same Error(usage), one line naming the path, the option, what is there and
/// the remedy, unless: the output's directory exists and takes new files; the output is no
/// file the run reads (the same device and inode: hard links, symbolic links and other
/// spellings of a file are that file); nor the file of another output (the same inode, or for
/// files not there yet the same normalized absolute path); a file there is empty or of the
/// output's kind (a data output's file an HDF5 file that is no aetrain checkpoint or model; a
/// scratch file anything but a directory); and a file of its kind is replaced only with
/// --overwrite, or continued with --resume (train). Collective.
void check_outputs(const OutputPlan& plan, const Comm& comm);

/// train's plan: --checkpoint, the .best of --early-stop and the .step<N> copies of --keep,
/// --metrics; reading its data, validation data, --init-from and --config.
OutputPlan train_outputs(const TrainConfig& config, const Sources& data, const Sources* val);

/// With --overwrite, removes the previous run's files that a new run replaces as a whole: its
/// --checkpoint, .best and .step<N> copies (only files that are aetrain training checkpoints).
/// Rank 0; collective.
void remove_previous_run(const TrainConfig& config, const Comm& comm);

/// True if the file at `path` is of `kind` (a checkpoint, a PCA model, metrics; for data, an
/// HDF5 file that is no aetrain checkpoint or model; for scratch, any file). One process.
bool holds(const std::string& path, FileKind kind);

/// Why a file could not be created at `path` (its directory is missing or not writable, found
/// by creating and removing a probe file), or "" when it could.
std::string unwritable_reason(const std::string& path);

/// Writing a file failed; what() is the system's reason, e.g. "No space left on device".
class WriteFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Writes `bytes` as a new file at `path` (a scratch name: a file there is removed first), in
/// pieces, and makes them durable (fsync). `progress(written)` runs once the file is created
/// (0) and after each piece. Throws WriteFailure, the file removed.
void write_new_file(const std::string& path, std::string_view bytes,
                    const std::function<void(size_t written)>& progress = {});

/// Reserves `bytes` of disk space past the end of the file at `path` (fallocate, its size left
/// as it is), so that writing them cannot fail for want of space: a full disk is found here,
/// before a byte is written. Throws WriteFailure; does nothing where the file system cannot
/// reserve space. One process.
void reserve_space(const std::string& path, int64_t bytes);
/// Gives back the part of a reservation that is past the end of the file. One process.
void release_space(const std::string& path);

/// Makes the finished file `tmp` appear as `path`, atomically and durably: its bytes reach the
/// disk (fsync) before the rename, and the rename itself (fsync of the directory) after it, so
/// a crash at any moment leaves the old file at `path` or the new one, never a torn one.
/// `before_rename` runs just before the rename (checkpoints keep the file they replace). One
/// process. Throws WriteFailure naming both paths when the rename fails (`tmp` is removed).
void publish_file(const std::string& tmp, const std::string& path,
                  const std::function<void()>& before_rename = {});

}  // namespace aetrain
