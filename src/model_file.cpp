#include "model_file.hpp"

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
#include <sstream>

#include "aetrain/checkpoint.hpp"
#include "aetrain/error.hpp"
#include "aetrain/fault.hpp"
#include "aetrain/layers.hpp"
#include "aetrain/outputs.hpp"
#include "aetrain/version.hpp"

namespace aetrain::model_file {

void bad(const std::string& path, const std::string& what) {
  throw Error(ExitCode::checkpoint, path + ": " + what);
}

namespace {

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

}  // namespace

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

namespace {

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

std::string layer_group(const LayerShape& l) {
  return std::string(l.decoder ? "decoder" : "encoder") + "/layer_" + std::to_string(l.index);
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

RowTransform read_transform(const h5::Handle& file, int64_t input_dim) {
  RowTransform t;
  if (!h5::exists(file, "/transform")) return t;  // before version 6, or none
  const h5::Handle g = h5::open_group(file, "/transform");
  t.asked.size_factor = h5::read_double_attribute(g, "size_factor");
  t.asked.scale = from_name<CountScale>(h5::read_string_attribute(g, "scale"));
  t.asked.features = h5::read_string_attribute(g, "features");
  t.stored_cols = h5::read_int_attribute(g, "stored_columns");
  if (h5::exists(g, "columns")) {
    t.columns = h5::read_dataset_i64(g, "columns", h5::shape(h5::open_dataset(g, "columns")));
    if (h5::exists(g, "names")) t.names = h5::read_strings(g, "names");
  }
  const bool sorted = std::adjacent_find(t.columns.begin(), t.columns.end(),
                                         std::greater_equal<>()) == t.columns.end();
  if (!(t.asked.size_factor >= 0) || t.stored_cols < 1 || t.cols() != input_dim || !sorted ||
      (!t.columns.empty() && (t.columns.front() < 0 || t.columns.back() >= t.stored_cols)) ||
      (!t.names.empty() && t.names.size() != t.columns.size()))
    throw h5::Failure("/transform: does not fit the model's " + std::to_string(input_dim) +
                      " inputs");
  return t;
}

ModelConfig read_model_config(const h5::Handle& file) {
  ModelConfig m;
  model_fields(m, AttributeReader{h5::open_group(file, "/model")});
  validate(m);
  return m;
}

}  // namespace

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

// The disk space to reserve for a file of `datasets` datasets that hold `bytes`: theirs, a row
// of padding a chunk at most, and room for the metadata (measured: 3.0 to 3.6 KiB a dataset
// with its chunk index, the groups around it and the checksum block, in checkpoints of 13 to 49
// datasets).
int64_t reserve_for(int64_t bytes, int64_t datasets) {
  return bytes + bytes / 64 + 4096 * datasets + (int64_t(32) << 10);
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
void write(const std::string& path, const std::string& format, int64_t version,
           const std::string& name, const std::string& point, int64_t reserve, const Fill& fill,
           const std::function<void()>& before_rename) {
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
        h5::write_attribute(root, "format_version", version);
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
      if (before_rename) before_rename();
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

void write_normalization(const h5::Handle& file, const Normalization& norm) {
  if (norm.identity()) return;
  h5::Handle g = h5::create_group(file, "normalization");
  h5::write_attribute(g, "kind", std::string(name_of(norm.kind)));
  h5::write_attribute(g, "rows", norm.rows);
  const int64_t d = norm.offset.size();
  h5::write_dataset(g, "offset", {d}, norm.offset.data());
  h5::write_dataset(g, "scale", {d}, norm.scale.data());
}

void write_transform(const h5::Handle& file, const RowTransform& t) {
  if (t.identity()) return;
  h5::Handle g = h5::create_group(file, "transform");
  h5::write_attribute(g, "size_factor", t.asked.size_factor);
  h5::write_attribute(g, "scale", std::string(name_of(t.asked.scale)));
  h5::write_attribute(g, "features", t.asked.features);
  h5::write_attribute(g, "stored_columns", t.stored_cols);
  if (t.columns.empty()) return;
  h5::write_dataset(g, "columns", {int64_t(t.columns.size())}, t.columns.data());
  if (!t.names.empty()) h5::write_strings(g, "names", t.names);
}

std::string read_bytes(const std::string& path) {
  if (!std::filesystem::exists(path)) bad(path, "no such file");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in && !in.eof()) bad(path, "cannot read");
  return bytes.str();
}

Opened open(const std::string& path, const std::string& image,
            std::span<const std::string_view> formats) {
  const bool checksummed = sealed(image);
  if (checksummed) check_seal(path, image);
  if (image.compare(checksummed ? kSealBytes : 0, kSignature.size(), kSignature) != 0)
    bad(path, "not an HDF5 file");
  Opened f;
  try {
    f.file = h5::open_image(image);
  } catch (const h5::Damaged& e) {
    bad(path, e.what());
  } catch (const h5::Failure& e) {
    bad(path, std::string("damaged or truncated HDF5 file (") + e.what() + ")");
  }
  try {
    h5::Handle root = h5::open_group(f.file, "/");
    f.format = h5::has_attribute(root, "format") ? h5::read_string_attribute(root, "format") : "";
    if (std::find(formats.begin(), formats.end(), f.format) == formats.end())
      bad(path, "not an aetrain checkpoint or model (no format = \"" + std::string(formats[0]) +
                    "\" attribute)");
    f.version = h5::read_int_attribute(root, "format_version");
    if (f.version > kCheckpointFormatVersion)
      bad(path, "format version " + std::to_string(f.version) +
                    " is newer than this aetrain reads (" +
                    std::to_string(kCheckpointFormatVersion) + "); use a newer aetrain");
    if (f.version < 1) bad(path, "invalid format_version " + std::to_string(f.version));
    if (f.version >= 5 && !checksummed)
      bad(path, "format version " + std::to_string(f.version) +
                    " without its checksum block (the first 4096 bytes: \"" +
                    std::string(kSealTag) +
                    "...\"): a copy made by another program? Use "
                    "aetrain's own file, or label the copy format_version 4");
    f.created_by =
        h5::has_attribute(root, "created_by") ? h5::read_string_attribute(root, "created_by") : "";
    f.model = read_model_config(f.file);
    f.normalization = read_normalization(f.file, f.model.input_dim);
    f.transform = read_transform(f.file, f.model.input_dim);
  } catch (const h5::Failure& e) {
    bad(path, e.what());
  } catch (const std::invalid_argument& e) {
    bad(path, e.what());
  }
  return f;
}

}  // namespace aetrain::model_file
