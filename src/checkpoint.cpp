#include "aetrain/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>

#include "aetrain/fault.hpp"
#include "aetrain/layers.hpp"
#include "aetrain/model.hpp"
#include "aetrain/outputs.hpp"
#include "h5.hpp"

namespace aetrain {
namespace {

constexpr const char* kCheckpoint = kCheckpointFormat;
constexpr const char* kPca = kPcaFormat;

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(ExitCode::checkpoint, path + ": " + what);
}

// A field as the checkpoint stores it (and JSON shows it): enums by name, the seed as int64.
std::string stored(Activation a) { return name_of(a); }
int64_t stored(uint64_t v) { return int64_t(v); }
template <class T>
const T& stored(const T& v) {
  return v;
}

// Writes each field of a list (model_fields, adam_fields, train_state_fields) as an attribute.
struct AttributeWriter {
  const h5::Handle& obj;
  template <class T>
  void operator()(const char* name, const T& value) const {
    h5::write_attribute(obj, name, stored(value));
  }
};

// Reads each field of a list back from its attribute. A field that a file of an older format
// lacks (one added since) keeps its default.
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

// Adds each field of a list to a JSON object.
struct JsonWriter {
  Json& json;
  template <class T>
  void operator()(const char* name, const T& value) const {
    json.add(name, stored(value));
  }
};

std::string layer_group(const LayerShape& l) {
  return std::string(l.decoder ? "decoder" : "encoder") + "/layer_" + std::to_string(l.index);
}

// Writes one tree (/model, /optimizer/m or /optimizer/v) of per-layer kernels and biases.
void write_tree(const h5::Handle& root, const std::vector<LayerShape>& layers,
                std::span<const float> flat) {
  h5::Handle enc = h5::create_group(root, "encoder");
  h5::Handle dec = h5::create_group(root, "decoder");
  for (const LayerShape& l : layers) {
    h5::Handle g = h5::create_group(l.decoder ? dec : enc, "layer_" + std::to_string(l.index));
    h5::write_dataset(g, "kernel", {l.in, l.out}, flat.data() + l.kernel_offset);
    h5::write_dataset(g, "bias", {l.out}, flat.data() + l.bias_offset);
  }
}

std::vector<float> read_tree(const std::string& path, const h5::Handle& file,
                             const std::string& root, const ModelConfig& model) {
  const std::vector<LayerShape> layers = layer_shapes(model);
  std::vector<float> flat(size_t(parameter_count(model)));
  for (const LayerShape& l : layers) {
    const std::string g = root + "/" + layer_group(l);
    for (auto [name, dims, offset] :
         {std::tuple{"/kernel", std::vector<int64_t>{l.in, l.out}, l.kernel_offset},
          std::tuple{"/bias", std::vector<int64_t>{l.out}, l.bias_offset}}) {
      std::vector<float> values;
      try {
        values = h5::read_dataset(file, g + name, dims);
      } catch (const h5::Damaged& e) {
        bad(path, e.what());
      } catch (const h5::Failure& e) {
        bad(path, std::string(e.what()) + " (this architecture needs " + g + name + " of shape " +
                      (dims.size() == 2 ? std::to_string(dims[0]) + "x" + std::to_string(dims[1])
                                        : std::to_string(dims[0])) +
                      ")");
      }
      if (!std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); }))
        bad(path, g + name + " holds NaN or infinite values");
      std::copy(values.begin(), values.end(), flat.begin() + offset);
    }
  }
  return flat;
}

// Keeps the checkpoint at `path` (about to be replaced) as path.step<N>, and only the newest
// keep - 1 such files: a hard link, so the checkpoint at `path` never goes missing. Only files
// that are aetrain training checkpoints are replaced or pruned.
void keep_previous(const std::string& path, int64_t keep) {
  namespace fs = std::filesystem;
  if (keep <= 1 || !fs::exists(path)) return;
  int64_t step = 0;
  try {
    step = h5::read_int_attribute(h5::open_group(h5::open_file(path), "/train"), "global_step");
  } catch (const h5::Failure&) {
    return;  // not ours to keep
  }
  const std::string kept = path + ".step" + std::to_string(step);
  std::error_code ec;
  if (!fs::exists(kept) || holds(kept, FileKind::checkpoint)) {
    fs::remove(kept, ec);
    fs::create_hard_link(path, kept, ec);
    if (ec) fs::copy_file(path, kept, ec);  // file systems without hard links
  }
  const fs::path dir = fs::absolute(path).parent_path();
  const std::string prefix = fs::path(path).filename().string() + ".step";
  std::vector<std::pair<int64_t, fs::path>> old;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") == std::string::npos &&
        holds(e.path().string(), FileKind::checkpoint))
      old.emplace_back(std::stoll(digits), e.path());
  }
  std::sort(old.begin(), old.end());
  for (size_t i = 0; i + size_t(keep - 1) < old.size(); ++i) fs::remove(old[i].second, ec);
}

// Format version 5 keeps a CRC-32 (zlib's) of the file in its first 4096 bytes, an HDF5 user
// block, which HDF5 and its readers skip. HDF5 checks its metadata and every chunk of data
// (Fletcher-32) itself, which names what is damaged, but not the global heap that holds the
// string attributes' values, the chunk indexes or unused space, and a damaged global heap makes
// it copy past its buffers: so the CRC is checked before HDF5 parses anything. It covers
// every byte but the chunks, which their Fletcher-32 sums cover (so a write passes over the
// data once); the block lists them:
//   aetrain crc32 1a2b3c4d\n
//   data OFFSET BYTES\n     (each run of adjacent chunks, in file order)
//   ...zeros to 4096
// and the CRC is of the block after its first line, then of the file's bytes after the block
// outside those runs. A file with more runs than the block holds lists its largest runs; the
// CRC covers the others too.
constexpr size_t kSealBytes = 4096;
constexpr std::string_view kSealTag = "aetrain crc32 ";
constexpr size_t kSealHead = kSealTag.size() + 9;  // the first line: tag, 8 hex digits, \n

using Extents = std::vector<std::pair<uint64_t, uint64_t>>;  // (offset, bytes), in file order

uint32_t crc32_of(uint32_t crc, const char* data, size_t n) {
  for (size_t at = 0; at < n;) {  // zlib takes 32-bit lengths
    const size_t piece = std::min<size_t>(n - at, size_t(1) << 30);
    crc = uint32_t(::crc32(crc, reinterpret_cast<const Bytef*>(data + at), uInt(piece)));
    at += piece;
  }
  return crc;
}

// The CRC of a file of `size` bytes whose block (after its first line) is `block`, skipping the
// runs `data`; read(offset, n) gives n bytes of the file.
template <class Read>
uint32_t seal_crc(const std::string& block, const Extents& data, uint64_t size, Read read) {
  uint32_t crc = crc32_of(0, block.data() + kSealHead, block.size() - kSealHead);
  uint64_t at = kSealBytes;
  for (size_t i = 0; i <= data.size(); ++i) {
    const uint64_t end = i < data.size() ? data[i].first : size;
    if (end > at) crc = crc32_of(crc, read(at, end - at), size_t(end - at));
    if (i < data.size()) at = data[i].first + data[i].second;
  }
  return crc;
}

std::string seal_head(uint32_t crc) {
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", crc);
  return std::string(kSealTag) + hex + "\n";
}

// Writes the checksum block of a file that HDF5 has written and closed.
void seal(const std::string& path) {
  Extents runs;
  for (const auto& [at, bytes] : h5::chunk_extents(h5::open_file(path))) {
    if (!runs.empty() && runs.back().first + runs.back().second == at)
      runs.back().second += bytes;
    else
      runs.emplace_back(at, bytes);
  }
  // The largest runs that the block holds, in file order.
  const auto line = [](const std::pair<uint64_t, uint64_t>& r) {
    return "data " + std::to_string(r.first) + " " + std::to_string(r.second) + "\n";
  };
  std::sort(runs.begin(), runs.end(), [](auto& x, auto& y) { return x.second > y.second; });
  size_t used = kSealHead, kept = 0;
  while (kept < runs.size() && used + line(runs[kept]).size() <= kSealBytes)
    used += line(runs[kept++]).size();
  runs.resize(kept);
  std::sort(runs.begin(), runs.end());
  std::string block(kSealHead, '\0');
  for (const auto& r : runs) block += line(r);
  block.resize(kSealBytes, '\0');

  const int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) throw WriteFailure(std::strerror(errno));
  std::vector<char> buffer;
  const auto read = [&](uint64_t at, uint64_t n) {
    buffer.resize(size_t(n));
    if (::pread(fd, buffer.data(), size_t(n), off_t(at)) != ssize_t(n))
      throw WriteFailure(std::strerror(errno));
    return buffer.data();
  };
  try {
    const off_t size = ::lseek(fd, 0, SEEK_END);
    const std::string head = seal_head(seal_crc(block, runs, uint64_t(size), read));
    block.replace(0, kSealHead, head);
    if (::pwrite(fd, block.data(), block.size(), 0) != ssize_t(block.size()))
      throw WriteFailure(std::strerror(errno));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

const std::string kSignature = "\x89HDF\r\n\x1a\n";

// A file with a checksum block: HDF5's signature after it (or a damaged file that says so).
bool sealed(const std::string& image) {
  return image.starts_with(kSealTag) ||
         (image.size() > kSealBytes && !image.starts_with(kSignature) &&
          image.compare(kSealBytes, kSignature.size(), kSignature) == 0);
}

// Names what is damaged in a file whose checksum does not match: what HDF5's own checksums
// find, else the parts that only the file's checksum covers.
[[noreturn]] void damaged(const std::string& path, const std::string& image) {
  h5::Handle file;
  try {
    file = h5::open_image(image);
  } catch (const h5::Damaged& e) {
    bad(path, e.what());
  } catch (const h5::Failure& e) {  // not a checksum of HDF5's, but the file's did not match
    bad(path, h5::Damaged("the superblock or root group", e.what()).what());
  }
  const std::string found = h5::find_damage(file);
  bad(path, !found.empty()
                ? found
                : "checksum mismatch: the file is damaged (its bytes differ from the CRC-32 in "
                  "its first 4096 bytes, outside every object header and dataset: in a string "
                  "attribute's value, a chunk index or unused space), or was changed since "
                  "aetrain wrote it");
}

// Checks the checksum block of a file that has one.
void check_seal(const std::string& path, const std::string& image) {
  const auto bad_block = [&](const std::string& why) {
    bad(path, "checksum mismatch: the file is damaged (its first " + std::to_string(kSealBytes) +
                  " bytes are not the checksum block \"" + std::string(kSealTag) +
                  "...\" that aetrain writes: " + why + ")");
  };
  if (image.size() < kSealBytes) bad(path, "truncated HDF5 file (shorter than its checksum block)");
  const std::string hex = image.substr(kSealTag.size(), 8);
  uint32_t stored = 0;
  const auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), stored, 16);
  if (ec != std::errc() || end != hex.data() + hex.size() ||
      image.compare(0, kSealHead, seal_head(stored)) != 0)
    bad_block("its first line");
  // The runs the CRC skips: "data OFFSET BYTES" lines, in file order, then zeros.
  Extents runs;
  size_t at = kSealHead;
  while (at < kSealBytes && image[at] != '\0') {
    const size_t eol = image.find('\n', at);
    if (eol >= kSealBytes || image.compare(at, 5, "data ") != 0) bad_block("a line");
    uint64_t offset = 0, bytes = 0;
    const char* p = image.data() + at + 5;
    const char* stop = image.data() + eol;
    auto r = std::from_chars(p, stop, offset);
    if (r.ec != std::errc() || r.ptr == stop || *r.ptr != ' ') bad_block("a line");
    r = std::from_chars(r.ptr + 1, stop, bytes);
    if (r.ec != std::errc() || r.ptr != stop) bad_block("a line");
    const uint64_t after = runs.empty() ? kSealBytes : runs.back().first + runs.back().second;
    if (offset < after || bytes > image.size() || offset > image.size() - bytes)
      bad_block("a run out of order or outside the file");
    runs.emplace_back(offset, bytes);
    at = eol + 1;
  }
  if (image.find_first_not_of('\0', at) < kSealBytes) bad_block("bytes after its lines");
  const std::string block = image.substr(0, kSealBytes);
  const uint32_t crc = seal_crc(block, runs, image.size(),
                                [&](uint64_t from, uint64_t) { return image.data() + from; });
  if (crc != stored) damaged(path, image);
}

// Writes the file as path + ".tmp", syncs it and renames it over `path`: a crash at any moment
// leaves the old file or the new one, and a failed write (a full disk) the old one and no .tmp.
// The .tmp starts as an empty HDF5 file written by a plain system call, with `reserve` bytes of
// disk reserved behind it, before HDF5 opens it and `fill` writes into it: so a full disk is a
// system call's plain error, found before HDF5 writes a byte (HDF5 1.10 cannot close a file
// whose writes failed). Then the checksum block is written (seal). `name` is the file's name in
// messages ("checkpoint") and `point` its fault points' prefix: POINT-tmp-created,
// POINT-mid-write (after the first half of what `fill` writes), POINT-before-rename,
// POINT-after-rename. Throws Error(write_failed) naming the path and the system's reason.
// The disk space to reserve for a file of `datasets` datasets that hold `bytes`: theirs, a row
// of padding a chunk at most, and room for the metadata (measured: 3.0 to 3.6 KiB a dataset
// with its chunk index, the groups around it and the checksum block, in checkpoints of 13 to 49
// datasets).
int64_t reserve_for(int64_t bytes, int64_t datasets) {
  return bytes + bytes / 64 + 4096 * datasets + (int64_t(32) << 10);
}

template <class Fill>
void write_atomically(const std::string& path, const std::string& format, const std::string& name,
                      const std::string& point, int64_t reserve, Fill fill, int64_t keep = 1) {
  const std::string tmp = path + ".tmp";
  const bool replacing = std::filesystem::exists(path);
  const auto failed = [&](const std::string& why) {
    std::remove(tmp.c_str());
    throw Error(ExitCode::write_failed,
                path + ": cannot write the " + name + ": " + why +
                    (replacing ? " (the previous " + name + " is kept)" : ""));
  };
  try {
    {
      h5::MemoryFile empty(kSealBytes, /*checksummed_format=*/true);
      write_new_file(tmp, empty.close());
    }
    if (fault(point + "-tmp-created")) std::raise(SIGKILL);
    reserve_space(tmp, reserve);
    {
      h5::Handle file = h5::open_file_rw(tmp);
      {
        h5::Handle root = h5::open_group(file, "/");
        h5::write_attribute(root, "format", format);
        h5::write_attribute(root, "format_version", kCheckpointFormatVersion);
        h5::write_attribute(root, "created_by", std::string("aetrain ") + AETRAIN_VERSION);
        fill(file, [&] {
          if (fault(point + "-mid-write")) std::raise(SIGKILL);
        });
      }
      h5::flush(file);
      if (!file.reset()) throw h5::Failure("closing the file failed");
    }
    release_space(tmp);
    seal(tmp);
  } catch (const h5::Failure& e) {
    failed(e.reason());
  } catch (const WriteFailure& e) {
    failed(e.what());
  }
  try {
    publish_file(tmp, path, [&] {
      if (fault(point + "-before-rename")) std::raise(SIGKILL);
      keep_previous(path, keep);
    });
  } catch (const WriteFailure& e) {
    failed(e.what());
  }
  if (fault(point + "-after-rename")) std::raise(SIGKILL);
}

void write_model(const h5::Handle& file, const ModelConfig& config, std::span<const float> params) {
  h5::Handle model = h5::create_group(file, "model");
  model_fields(config, AttributeWriter{model});
  write_tree(model, layer_shapes(config), params);
}

// The /normalization group (format version 2), only for a model that normalizes its input.
void write_normalization(const h5::Handle& file, const Normalization& norm) {
  if (norm.identity()) return;
  h5::Handle g = h5::create_group(file, "normalization");
  h5::write_attribute(g, "kind", std::string(name_of(norm.kind)));
  h5::write_attribute(g, "rows", norm.rows);
  const int64_t d = norm.offset.size();
  h5::write_dataset(g, "offset", {d}, norm.offset.data());
  h5::write_dataset(g, "scale", {d}, norm.scale.data());
}

Normalization read_normalization(const h5::Handle& file, int64_t input_dim) {
  Normalization norm;
  if (!h5::exists(file, "/normalization")) return norm;  // version 1, or none
  h5::Handle g = h5::open_group(file, "/normalization");
  norm.kind = from_name<NormalizeKind>(h5::read_string_attribute(g, "kind"));
  if (norm.identity()) return norm;
  norm.rows = h5::read_int_attribute(g, "rows");
  norm.offset =
      Eigen::Map<Eigen::VectorXd>(h5::read_dataset_f64(g, "offset", {input_dim}).data(), input_dim);
  norm.scale =
      Eigen::Map<Eigen::VectorXd>(h5::read_dataset_f64(g, "scale", {input_dim}).data(), input_dim);
  try {
    validate(norm, input_dim);
  } catch (const std::invalid_argument& e) {
    throw h5::Failure(std::string("/normalization: ") + e.what());
  }
  return norm;
}

std::string read_bytes(const std::string& path) {
  if (!std::filesystem::exists(path)) bad(path, "no such file");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in && !in.eof()) bad(path, "cannot read");
  return bytes.str();
}

ModelConfig read_model_config(const h5::Handle& file) {
  ModelConfig m;
  model_fields(m, AttributeReader{h5::open_group(file, "/model")});
  validate(m);
  return m;
}

void read_training_state(const h5::Handle& file, int64_t version, CheckpointHeader& h) {
  h5::Handle opt = h5::open_group(file, "/optimizer");
  if (h5::read_string_attribute(opt, "name") != "adam")
    throw h5::Failure("the optimizer is not adam");
  adam_fields(h.adam, AttributeReader{opt});
  h.adam_step = h5::read_int_attribute(opt, "step");
  const h5::Handle train = h5::open_group(file, "/train");
  train_state_fields(h.train, AttributeReader{train, version < kCheckpointFormatVersion});
  h.train.sources = h5::exists(train, "sources")
                        ? h5::read_sources(train, "sources")
                        : std::vector<SourceEntry>{{h.train.data_file, h.train.dataset, 0, -1}};
}

PcaModel read_pca(const h5::Handle& file, const ModelConfig& model) {
  const int64_t d = model.input_dim, k = model.encoder_widths.back();
  h5::Handle g = h5::open_group(file, "/pca");
  PcaModel pca;
  pca.rows = h5::read_int_attribute(g, "rows");
  pca.total_variance = h5::read_double_attribute(g, "total_variance");
  pca.mean = Eigen::Map<Eigen::VectorXd>(h5::read_dataset_f64(g, "mean", {d}).data(), d);
  // Stored [k, d], one axis per row: byte for byte our column-major (d, k).
  pca.components =
      Eigen::Map<Eigen::MatrixXd>(h5::read_dataset_f64(g, "components", {k, d}).data(), d, k);
  pca.explained_variance =
      Eigen::Map<Eigen::VectorXd>(h5::read_dataset_f64(g, "explained_variance", {k}).data(), k);
  // Read for its checksum alone: the commands compute the ratio from the variances.
  h5::read_dataset_f64(g, "explained_variance_ratio", {k});
  return pca;
}

// Parses a model file held in memory (HDF5's core driver over the bytes of the file).
Checkpoint parse(const std::string& path, const std::string& image) {
  const bool checksummed = sealed(image);
  if (checksummed) check_seal(path, image);
  if (image.compare(checksummed ? kSealBytes : 0, kSignature.size(), kSignature) != 0)
    bad(path, "not an HDF5 file");
  h5::Handle file;
  try {
    file = h5::open_image(image);
  } catch (const h5::Damaged& e) {
    bad(path, e.what());
  } catch (const h5::Failure& e) {
    bad(path, std::string("damaged or truncated HDF5 file (") + e.what() + ")");
  }
  Checkpoint c;
  try {
    h5::Handle root = h5::open_group(file, "/");
    const std::string format =
        h5::has_attribute(root, "format") ? h5::read_string_attribute(root, "format") : "";
    if (format != kCheckpoint && format != kPca)
      bad(path, "not an aetrain checkpoint or model (no format = \"" + std::string(kCheckpoint) +
                    "\" attribute)");
    const int64_t version = h5::read_int_attribute(root, "format_version");
    if (version > kCheckpointFormatVersion)
      bad(path, "format version " + std::to_string(version) +
                    " is newer than this aetrain reads (" +
                    std::to_string(kCheckpointFormatVersion) + "); use a newer aetrain");
    if (version < 1) bad(path, "invalid format_version " + std::to_string(version));
    if (version >= 5 && !checksummed)
      bad(path, "format version " + std::to_string(version) +
                    " without its checksum block (the first 4096 bytes: \"" +
                    std::string(kSealTag) +
                    "...\"): a copy made by another program? Use "
                    "aetrain's own file, or label the copy format_version 4");
    c.created_by =
        h5::has_attribute(root, "created_by") ? h5::read_string_attribute(root, "created_by") : "";
    c.header.model = read_model_config(file);
    c.header.normalization = read_normalization(file, c.header.model.input_dim);
    if (format == kCheckpoint) {
      // A model alone (weights from elsewhere, or written by hand) has no training state.
      for (const char* group : {"/optimizer", "/train"})
        if (!h5::exists(file, group))
          c.missing_state += (c.missing_state.empty() ? "" : " and ") + std::string(group);
      c.has_training_state = c.missing_state.empty();
      if (c.has_training_state) read_training_state(file, version, c.header);
    } else {
      c.kind = ModelKind::pca;
      c.pca = read_pca(file, c.header.model);
    }
  } catch (const h5::Failure& e) {
    bad(path, e.what());
  } catch (const std::invalid_argument& e) {
    bad(path, e.what());
  }
  c.params = read_tree(path, file, "/model", c.header.model);
  if (c.has_training_state) {
    c.m = read_tree(path, file, "/optimizer/m", c.header.model);
    c.v = read_tree(path, file, "/optimizer/v", c.header.model);
  }
  return c;
}

}  // namespace

const char* model_kind_name(ModelKind kind) {
  return kind == ModelKind::pca ? "pca" : "autoencoder";
}

Json to_json(const ModelConfig& model) {
  Json j;
  model_fields(model, JsonWriter{j});
  return j;
}

Json to_json(const AdamConfig& adam) {
  Json j;
  adam_fields(adam, JsonWriter{j});
  return j;
}

Json to_json(const TrainState& state) {
  Json j;
  train_state_fields(state, JsonWriter{j});
  return j;
}

void write_checkpoint(const std::string& path, const CheckpointHeader& h,
                      std::span<const float> params, std::span<const float> m,
                      std::span<const float> v, int64_t keep) {
  // CHECKPOINT.best is --early-stop's best model (Trainer::best_path), in messages too.
  const char* name = path.ends_with(".best") ? "best model" : "checkpoint";
  int64_t bytes = 4 * int64_t(params.size() + m.size() + v.size()) +
                  16 * h.normalization.offset.size() + int64_t(h.train.config.size());
  for (const SourceEntry& e : h.train.sources)
    bytes += 16 + 2 * int64_t(e.file.size() + e.dataset.size());
  const int64_t datasets = 3 * 2 * int64_t(layer_shapes(h.model).size()) + 3;
  write_atomically(
      path, kCheckpoint, name, "checkpoint", reserve_for(bytes, datasets),
      [&](const h5::Handle& file, const auto& halfway) {
        write_model(file, h.model, params);
        write_normalization(file, h.normalization);
        const std::vector<LayerShape> layers = layer_shapes(h.model);
        h5::Handle opt = h5::create_group(file, "optimizer");
        h5::write_attribute(opt, "name", std::string("adam"));
        adam_fields(h.adam, AttributeWriter{opt});
        h5::write_attribute(opt, "step", h.adam_step);
        // The disk writes each tree while the next is checksummed and written.
        h5::start_writeback(file);
        write_tree(h5::create_group(opt, "m"), layers, m);
        halfway();
        h5::start_writeback(file);
        write_tree(h5::create_group(opt, "v"), layers, v);
        h5::start_writeback(file);

        const h5::Handle train = h5::create_group(file, "train");
        train_state_fields(h.train, AttributeWriter{train});
        h5::write_sources(train, "sources", h.train.sources, h5::Storage::checksummed);
      },
      keep);
}

void write_pca_model(const std::string& path, const PcaModel& pca, const Normalization& norm) {
  const int64_t d = pca.mean.size(), k = pca.components.cols();
  // The linear model's float32 weights, /pca's float64 arrays, the statistics.
  const int64_t bytes = 4 * (2 * d * k + d + k) + 8 * (d + k * d + 2 * k) + 16 * d;
  write_atomically(path, kPca, "PCA model", "pca-model", reserve_for(bytes, 10),
                   [&](const h5::Handle& file, const auto& halfway) {
                     write_model(file, pca_model_config(pca), pca_model_params(pca));
                     halfway();
                     write_normalization(file, norm);
                     h5::Handle g = h5::create_group(file, "pca");
                     h5::write_attribute(g, "rows", pca.rows);
                     h5::write_attribute(g, "total_variance", pca.total_variance);
                     h5::write_dataset(g, "mean", {d}, pca.mean.data());
                     h5::write_dataset(g, "components", {k, d}, pca.components.data());
                     h5::write_dataset(g, "explained_variance", {k}, pca.explained_variance.data());
                     const Eigen::VectorXd ratio = pca.explained_variance / pca.total_variance;
                     h5::write_dataset(g, "explained_variance_ratio", {k}, ratio.data());
                   });
}

void reseal_checkpoint(const std::string& path) { seal(path); }

Checkpoint read_checkpoint(const std::string& path) { return parse(path, read_bytes(path)); }

void save_checkpoint(const std::string& path, const CheckpointHeader& header,
                     std::span<const float> params, std::span<const float> m,
                     std::span<const float> v, int64_t keep, const Comm& comm) {
  comm.root_decides([&] { write_checkpoint(path, header, params, m, v, keep); });
}

Checkpoint load_checkpoint(const std::string& path, const Comm& comm) {
  std::string image;
  comm.root_decides([&] { image = read_bytes(path); });
  comm.broadcast(image);
  Checkpoint c;
  comm.agree([&] { c = parse(path, image); });
  return c;
}

}  // namespace aetrain
