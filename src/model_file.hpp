// The model file (docs/checkpoint.md), what every aetrain model file is, a training checkpoint
// and a PCA model alike: the root's format attributes, a checksum block over every byte, the
// atomic write, the model (/model: its architecture and weights) and what it does to its input
// first (/normalization). The training state (/optimizer, /train) and a PCA (/pca) are written
// and read on top of it (checkpoint.cpp). Private to the library: it names HDF5 types.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aetrain/config.hpp"
#include "aetrain/model.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/transform.hpp"
#include "h5.hpp"

namespace aetrain::model_file {

/// Throws Error(checkpoint): "PATH: WHAT".
[[noreturn]] void bad(const std::string& path, const std::string& what);

/// A field as a model file stores it (and JSON shows it): enums by name, the seed as int64.
inline std::string stored(Activation a) { return name_of(a); }
inline int64_t stored(uint64_t v) { return int64_t(v); }
template <class T>
const T& stored(const T& v) {
  return v;
}

/// Writes each field of a list (model_fields, adam_fields, train_state_fields) as an attribute.
struct AttributeWriter {
  const h5::Handle& obj;
  template <class T>
  void operator()(const char* name, const T& value) const {
    h5::write_attribute(obj, name, stored(value));
  }
};

/// Reads each field of a list back from its attribute. A field that a file of an older format
/// lacks (one added since) keeps its default.
struct AttributeReader {
  const h5::Handle& obj;
  bool older = false;  // the file's format is older than this aetrain's
  template <class T>
  void operator()(const char* name, T& v) const {
    if (older && !h5::has_attribute(obj, name)) return;
    read(name, v);
  }
  void read(const char* name, int64_t& v) const { v = h5::read_int_attribute(obj, name); }
  void read(const char* name, uint64_t& v) const {
    v = uint64_t(h5::read_int_attribute(obj, name));
  }
  void read(const char* name, double& v) const { v = h5::read_double_attribute(obj, name); }
  void read(const char* name, std::string& v) const { v = h5::read_string_attribute(obj, name); }
  void read(const char* name, std::vector<int64_t>& v) const {
    v = h5::read_int_array_attribute(obj, name);
  }
  void read(const char* name, Activation& v) const {
    v = from_name<Activation>(h5::read_string_attribute(obj, name));
  }
};

/// Writes one tree (/model, /optimizer/m or /optimizer/v) of per-layer kernels and biases.
void write_tree(const h5::Handle& root, const std::vector<LayerShape>& layers,
                std::span<const float> flat);
/// Reads one tree back, every shape checked and every value finite; errors name `path`.
std::vector<float> read_tree(const std::string& path, const h5::Handle& file,
                             const std::string& root, const ModelConfig& model);

/// The disk space to reserve for a file of `datasets` datasets that hold `bytes`.
int64_t reserve_for(int64_t bytes, int64_t datasets);

/// What writes the file's groups: `halfway()` is the mid-write fault point.
using Fill = std::function<void(const h5::Handle& file, const std::function<void()>& halfway)>;

/// Writes the file as path + ".tmp", syncs it and renames it over `path` (model_file.cpp says
/// how): the root's attributes (`format`, the format version, created_by), then `fill`, then
/// the checksum block. `before_rename` runs just before the rename (a training checkpoint keeps
/// the file it replaces there). `name` is the file's name in messages ("checkpoint") and
/// `point` its fault points' prefix. Throws Error(write_failed) naming the path and the
/// system's reason.
/// The root's format_version is `version`.
void write(const std::string& path, const std::string& format, int64_t version,
           const std::string& name, const std::string& point, int64_t reserve, const Fill& fill,
           const std::function<void()>& before_rename = {});

/// Writes /model: the architecture's attributes and the weights.
void write_model(const h5::Handle& file, const ModelConfig& config, std::span<const float> params);
/// Writes /normalization (format version 2), only for a model that normalizes its input.
void write_normalization(const h5::Handle& file, const Normalization& norm);
/// Writes /transform (format version 6), only for a model with a count transform.
void write_transform(const h5::Handle& file, const RowTransform& transform);

/// Writes the checksum block of a file that HDF5 has written and closed.
void seal(const std::string& path);

/// The bytes of the file at `path`; Error(checkpoint) when it is missing or unreadable.
std::string read_bytes(const std::string& path);

/// A model file opened from its bytes: its checksums, format and version checked, its model's
/// architecture and normalization read (its weights are read_tree(path, file, "/model", model)).
struct Opened {
  h5::Handle file;
  std::string format;
  int64_t version = 0;
  std::string created_by;
  ModelConfig model;
  Normalization normalization;
  RowTransform transform;
};

/// Opens a model file held in memory (HDF5's core driver over `image`) whose root's `format`
/// is one of `formats` (refused naming the first). Throws Error(checkpoint) naming `path` and
/// what is wrong.
Opened open(const std::string& path, const std::string& image,
            std::span<const std::string_view> formats);

}  // namespace aetrain::model_file
