// The HDF5 checkpoint (docs/checkpoint.md): save atomically, every byte under a checksum;
// load checked.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "aetrain/comm.hpp"
#include "aetrain/config.hpp"
#include "aetrain/log.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/pca.hpp"
#include "aetrain/sources.hpp"
#include "aetrain/transform.hpp"

namespace aetrain {

/// The format this aetrain writes; it reads every version from 1 to this one. Version 2 added
/// /normalization, version 3 the data layout (/train block_rows, window_rows) and the files
/// trained on (/train/sources), version 4 early stopping's state, version 5 checksums (HDF5's
/// 1.8 format with its metadata checksums, Fletcher-32 on every dataset, the root attribute
/// string_checksums for the string attributes), version 6 the count transform (/transform).
/// A file is written as the oldest version that holds what it holds (format_version_for).
constexpr int64_t kCheckpointFormatVersion = 6;

/// The root attribute `format` of a training checkpoint (or a model alone) and of a PCA model.
constexpr const char* kCheckpointFormat = "aetrain-checkpoint";
constexpr const char* kPcaFormat = "aetrain-pca";

/// Where training stands (the /train group): the data cursor and the run that wrote it.
struct TrainState {
  int64_t epoch = 0;          // epochs completed
  int64_t step_in_epoch = 0;  // steps completed in the epoch under way
  int64_t global_step = 0;    // steps completed in all
  uint64_t seed = 0;
  int64_t global_batch = 0;
  int64_t world_size = 1;
  std::string data_file, dataset;           // the first file's
  std::string config;                       // the effective configuration, as TOML
  int64_t block_rows = 0, window_rows = 0;  // the data layout; 0 in files before version 3
  std::vector<SourceEntry> sources;  // the files trained on, their rows; before version 3 the
                                     // one data_file, its rows unknown (-1)
  // Early stopping (version 4): the best val_loss so far, after how many epochs, and the
  // epochs since.
  double best_val_loss = std::numeric_limits<double>::infinity();
  int64_t best_epoch = 0;
  int64_t epochs_since_best = 0;
};

/// The training state by name (the checkpoint's /train attributes), as model_fields.
template <class T, class F>
void train_state_fields(T& t, F&& f) {
  f("epoch", t.epoch);
  f("step_in_epoch", t.step_in_epoch);
  f("global_step", t.global_step);
  f("seed", t.seed);
  f("global_batch", t.global_batch);
  f("world_size", t.world_size);
  f("data_file", t.data_file);
  f("dataset", t.dataset);
  f("config", t.config);
  f("block_rows", t.block_rows);
  f("window_rows", t.window_rows);
  f("best_val_loss", t.best_val_loss);
  f("best_epoch", t.best_epoch);
  f("epochs_since_best", t.epochs_since_best);
}

/// The version a model file is written as: 6 with a count transform, else 5 (which aetrain
/// versions before the transform read too).
inline int64_t format_version_for(const RowTransform& t) { return t.identity() ? 5 : 6; }

/// Everything in a checkpoint but the arrays.
struct CheckpointHeader {
  ModelConfig model;
  RowTransform transform;       // what the model does to its input first
  Normalization normalization;  // and then
  AdamConfig adam;
  int64_t adam_step = 0;  // updates applied so far
  TrainState train;
};

/// What a model file holds: a training checkpoint of an autoencoder, or a PCA fitted by
/// `aetrain pca` (stored with the equivalent linear autoencoder, so every command can use it).
enum class ModelKind { autoencoder, pca };
/// "autoencoder" or "pca".
const char* model_kind_name(ModelKind kind);

/// A model file read back: flat arrays in the model's parameter layout.
struct Checkpoint {
  ModelKind kind = ModelKind::autoencoder;
  std::string created_by;
  CheckpointHeader header;  // .model and .normalization always; the rest with training state
  bool has_training_state = false;
  std::string missing_state;        // without training state: what is missing ("/optimizer", ...)
  std::vector<float> params, m, v;  // m and v empty without training state
  PcaModel pca;                     // for kind == pca
};

/// The architecture, Adam's hyperparameters and the training state as JSON objects, with the
/// checkpoint's names and types (enums by name, the seed as an integer).
Json to_json(const ModelConfig& model);
Json to_json(const AdamConfig& adam);
Json to_json(const TrainState& state);

/// Builds the file in memory, writes it as path + ".tmp", flushes it to disk and renames it
/// over `path`, so a crash leaves the old checkpoint or the new one, never a torn file, and a
/// failed write (a full disk) the old one and no .tmp. With keep > 1 the checkpoint it replaces
/// stays as path.step<its global step> (a hard link, made before the rename), and only the
/// newest keep - 1 of those remain. One process. Throws Error(write_failed) naming the path and
/// the system's reason.
void write_checkpoint(const std::string& path, const CheckpointHeader& header,
                      std::span<const float> params, std::span<const float> m,
                      std::span<const float> v, int64_t keep = 1);

/// Writes a PCA model file (atomically, like write_checkpoint): /model holds the equivalent
/// linear autoencoder of the PCA of the normalized rows, /normalization `norm`, /pca the
/// analysis. One process.
void write_pca_model(const std::string& path, const PcaModel& pca, const Normalization& norm,
                     const RowTransform& transform = {});

/// Reads and checks a model file (checksums, format, version, every shape, finite values): a
/// training checkpoint, a PCA model, or a model alone (/model, and /normalization if any,
/// without /optimizer and /train). One process. Throws Error(checkpoint) naming the file and
/// what is wrong: for a damaged file, "checksum mismatch" and the dataset, group or attribute.
Checkpoint read_checkpoint(const std::string& path);

/// Rewrites the checksum block of a checkpoint or model file (format 5) that another program
/// changed on purpose, so that aetrain reads it again. One process.
void reseal_checkpoint(const std::string& path);

/// Rank 0 writes; every rank learns whether it worked. Collective.
void save_checkpoint(const std::string& path, const CheckpointHeader& header,
                     std::span<const float> params, std::span<const float> m,
                     std::span<const float> v, int64_t keep, const Comm& comm);

/// Rank 0 reads the file once and broadcasts its bytes; every rank checks the same image, so
/// all ranks get identical arrays or the same error. Collective.
Checkpoint load_checkpoint(const std::string& path, const Comm& comm);

}  // namespace aetrain
