#include "launch/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <span>
#include <sstream>
#include <type_traits>
#include <utility>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/h5.h"

namespace dtrain {

namespace fs = std::filesystem;

namespace {

const std::regex& checkpoint_name_pattern() {
  static const std::regex pattern(R"(step-([0-9]{1,18})\.h5)");
  return pattern;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) out += (i ? "\n" : "") + lines[i];
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  if (text.empty()) return lines;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line, '\n');) lines.push_back(line);
  return lines;
}

// The tensor's elements on the host: the tensor itself on the CPU (no copy), else a host copy.
Tensor on_host(const Tensor& t) { return t.device().is_cpu() ? t : t.to(Device::cpu()); }

// Runs one read of field `field` of checkpoint `path`, turning any failure into an error naming both.
template <typename Read>
auto read_field(const std::string& path, const std::string& field, Read&& read) -> decltype(read()) {
  try {
    return read();
  } catch (const Error& e) {
    fail("checkpoint ", path, ": cannot read ", field, ": ", e.what());
  }
}

// Reads attribute `attr` of the file's root with `read` (one of h5::Object's attr_* members).
template <typename Read>
auto root_attr(const h5::File& f, const char* attr, Read read) {
  DTRAIN_CHECK(f.has_attr(attr), "checkpoint ", f.file(), ": missing attribute '", attr, "'");
  return read_field(f.file(), std::string("attribute '") + attr + "'", [&] { return (f.*read)(attr); });
}
std::string string_attr(const h5::File& f, const char* attr) { return root_attr(f, attr, &h5::Object::attr_string); }
int64_t int_attr(const h5::File& f, const char* attr) { return root_attr(f, attr, &h5::Object::attr_int); }
double float_attr(const h5::File& f, const char* attr) { return root_attr(f, attr, &h5::Object::attr_float); }

// Writes one attribute on the file's root, naming it when HDF5 refuses.
template <typename T>
void set_root_attr(const h5::File& f, const char* attr, const T& value) {
  try {
    f.set_attr(attr, value);
  } catch (const Error& e) {
    fail("attribute '", attr, "': ", e.what());
  }
}

// Opens dataset `name` and checks it holds f32 elements of `shape`.
h5::Dataset tensor_dataset(const h5::File& f, const std::string& name, const Shape& shape) {
  DTRAIN_CHECK(f.has(name), "checkpoint ", f.file(), ": missing dataset ", name, " (expected f32 ", shape.str(), ")");
  h5::Dataset d = f.dataset(name);
  const Shape have = d.shape();
  const std::string type = d.type_name();
  DTRAIN_CHECK(have == shape && type == "f32", "checkpoint ", f.file(), ": dataset ", name, " is ", type, " ",
               have.str(), ", expected f32 ", shape.str());
  return d;
}

CheckpointMeta read_meta(const h5::File& f) {
  const std::string& path = f.file();
  CheckpointMeta m;
  m.step = int_attr(f, "step");
  m.epoch = int_attr(f, "epoch");
  const int64_t world = int_attr(f, "world_size");
  DTRAIN_CHECK(world >= 1 && world <= (int64_t{1} << 20), "checkpoint ", path, ": attribute 'world_size' is ", world,
               ", expected a rank count >= 1");
  m.world_size = static_cast<int>(world);
  m.optimizer_type = string_attr(f, "optimizer_type");
  m.optimizer_steps = int_attr(f, "optimizer_steps");
  m.config = string_attr(f, "config");
  m.signature = split_lines(string_attr(f, "signature"));
  m.dtrain_version = string_attr(f, "dtrain_version");
  m.test_accuracy = float_attr(f, "test_accuracy");
  m.test_loss = float_attr(f, "test_loss");
  m.input_dtype = string_attr(f, "input_dtype");
  m.x_scale = float_attr(f, "x_scale");
  m.x_shift = float_attr(f, "x_shift");

  m.rng_offsets.resize(static_cast<size_t>(m.world_size));
  for (int r = 0; r < m.world_size; ++r) {
    const std::string name = "/rng/" + std::to_string(r);
    DTRAIN_CHECK(f.has(name), "checkpoint ", path, ": missing dataset ", name, " (world_size is ", m.world_size, ")");
    read_field(path, "dataset " + name, [&] {
      h5::Dataset d = f.dataset(name);
      DTRAIN_CHECK(d.shape() == Shape{1}, "shape ", d.shape().str(), ", expected [1]");
      d.read_rows_raw(H5T_NATIVE_UINT64, &m.rng_offsets[static_cast<size_t>(r)], 1, 0, 1);
    });
  }
  DTRAIN_CHECK(f.has("/sampler"), "checkpoint ", path, ": missing dataset /sampler (expected i64 [2])");
  read_field(path, "dataset /sampler", [&] {
    h5::Dataset d = f.dataset("/sampler");
    DTRAIN_CHECK(d.shape() == Shape{2}, "shape ", d.shape().str(), ", expected [2]");
    const std::vector<int64_t> s = d.read_all<int64_t>();
    m.sampler = {s[0], s[1]};
  });
  return m;
}

// Throws naming the first line where the checkpoint's signature differs from the model's.
void check_signature(const std::string& path, const std::vector<std::string>& stored,
                     const std::vector<std::string>& model) {
  const size_t n = std::max(stored.size(), model.size());
  for (size_t i = 0; i < n; ++i) {
    const std::string a = i < stored.size() ? stored[i] : "(no line)";
    const std::string b = i < model.size() ? model[i] : "(no line)";
    if (a != b)
      fail("checkpoint ", path, " does not match the configured model: first difference: line ", i + 1,
           ": checkpoint has '", a, "', model has '", b, "'");
  }
}

// Reads every dataset in group `g` and below in full (the resume check: truncation shows up here).
void read_every_dataset(const h5::Group& g, std::vector<std::byte>& buffer) {
  for (const std::string& child : g.children()) {
    const std::string path = g.name() == "/" ? "/" + child : g.name() + "/" + child;
    h5::Id object(DTRAIN_H5_CHECK(H5Oopen(g.id(), child.c_str(), H5P_DEFAULT), g.file()), H5Oclose);
    const H5I_type_t kind = H5Iget_type(object.get());
    object.reset();
    if (kind == H5I_GROUP) {
      read_every_dataset(g.group(path), buffer);
    } else if (kind == H5I_DATASET) {
      h5::Dataset d = g.dataset(path);
      h5::Id file_type(DTRAIN_H5_CHECK(H5Dget_type(d.id()), g.file()), H5Tclose);
      h5::Id mem_type(DTRAIN_H5_CHECK(H5Tget_native_type(file_type.get(), H5T_DIR_ASCEND), g.file()), H5Tclose);
      const int64_t n = d.shape().numel();
      const size_t bytes = static_cast<size_t>(n) * H5Tget_size(mem_type.get());
      if (buffer.size() < bytes) buffer.resize(bytes);
      d.read_rows_raw(mem_type.get(), buffer.data(), static_cast<size_t>(n), 0, d.rows());
    }
  }
}

// The root attributes. The writer stamps what it knows better than the caller: its version, and the
// optimizer's own type and step count when one is given.
void write_meta_attrs(h5::File& f, const CheckpointMeta& meta, const Optimizer* optimizer) {
  set_root_attr(f, "step", meta.step);
  set_root_attr(f, "epoch", meta.epoch);
  set_root_attr(f, "world_size", static_cast<int64_t>(meta.world_size));
  set_root_attr(f, "optimizer_type", optimizer ? optimizer->config().type : meta.optimizer_type);
  set_root_attr(f, "optimizer_steps", optimizer ? optimizer->steps() : meta.optimizer_steps);
  set_root_attr(f, "config", meta.config);
  set_root_attr(f, "signature", join_lines(meta.signature));
  set_root_attr(f, "dtrain_version", std::string(DTRAIN_VERSION));
  set_root_attr(f, "test_accuracy", meta.test_accuracy);
  set_root_attr(f, "test_loss", meta.test_loss);
  set_root_attr(f, "input_dtype", meta.input_dtype);
  set_root_attr(f, "x_scale", meta.x_scale);
  set_root_attr(f, "x_shift", meta.x_shift);
}

void write_checkpoint_file(const std::string& path, const ParameterArena& arena, const Optimizer* optimizer,
                           const CheckpointMeta& meta) {
  DTRAIN_CHECK(arena.allocated(), "the model's parameters are not allocated");
  DTRAIN_CHECK(meta.world_size >= 1 && meta.rng_offsets.size() == static_cast<size_t>(meta.world_size), "meta has ",
               meta.rng_offsets.size(), " rng offsets for world_size ", meta.world_size, ", expected one per rank");
  ensure_directory(fs::path(path).parent_path().string());

  // Host views of every tensor, taken before the HDF5 lock: on the CPU these are the arena's own
  // memory (written without a copy); a GPU arena is copied to the host once here.
  std::vector<Tensor> values;
  for (const Parameter* p : arena.parameters()) values.push_back(on_host(p->value));
  std::vector<std::pair<std::string, Tensor>> slots;
  if (optimizer)
    for (const auto& [name, slot] : optimizer->slots()) slots.emplace_back(name, on_host(*slot));

  auto guard = h5::lock();  // declared before the file so an unwinding close still holds it
  h5::AtomicFile out(path);
  h5::File& f = out.file();
  const auto& params = arena.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const Parameter& p = *params[i];
    const Tensor& v = values[i];
    f.create_dataset("/params/" + p.name, DType::f32, p.shape)
        .write(std::span<const float>(v.data<float>(), static_cast<size_t>(v.numel())));
  }
  for (const auto& [slot_name, slot] : slots)
    for (const Parameter* p : params) {
      const Tensor range = slot.flat_range(p->offset, p->shape.numel());
      f.create_dataset("/optim/" + p->name + "/" + slot_name, DType::f32, p->shape)
          .write(std::span<const float>(range.data<float>(), static_cast<size_t>(range.numel())));
    }
  for (int r = 0; r < meta.world_size; ++r) {
    h5::Dataset d = f.create_dataset("/rng/" + std::to_string(r), H5T_STD_U64LE, Shape{1});
    DTRAIN_H5_CHECK(
        H5Dwrite(d.id(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &meta.rng_offsets[static_cast<size_t>(r)]),
        out.temp_path());
  }
  const std::vector<int64_t> sampler{meta.sampler.epoch, meta.sampler.position};
  f.create_dataset("/sampler", DType::i64, Shape{2}).write(std::span<const int64_t>(sampler));

  write_meta_attrs(f, meta, optimizer);
  f.close();
  guard.unlock();  // the fsync and rename need no HDF5: let a loader thread go on meanwhile
  out.commit();
}

}  // namespace

std::string checkpoint_path(const std::string& dir, int64_t step) {
  DTRAIN_CHECK(step >= 0, "checkpoint step ", step, " is negative");
  char name[32];
  std::snprintf(name, sizeof name, "step-%09lld.h5", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

int64_t write_checkpoint(const std::string& path, const ParameterArena& arena, const Optimizer* optimizer,
                         const CheckpointMeta& meta) {
  try {
    write_checkpoint_file(path, arena, optimizer, meta);
  } catch (const Error& e) {  // the AtomicFile has removed PATH.tmp by now
    fail("cannot write checkpoint ", path, ": ", e.what());
  }
  std::error_code ec;
  const auto bytes = fs::file_size(path, ec);
  DTRAIN_CHECK(!ec, "checkpoint ", path, ": cannot stat after writing: ", ec.message());
  return static_cast<int64_t>(bytes);
}

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  auto guard = h5::lock();
  const h5::File f = h5::File::open(path);
  return read_meta(f);
}

CheckpointMeta load_checkpoint(const std::string& path, ParameterArena& arena, Optimizer* optimizer,
                               const std::vector<std::string>& signature) {
  DTRAIN_CHECK(arena.allocated(), "load_checkpoint ", path, ": the model's parameters are not allocated");
  // Everything is read into host tensors shaped like the arena and its slots, and checked, before
  // the first byte of the model changes.
  const auto& params = arena.parameters();
  Tensor values = Tensor::empty(Shape{arena.numel()});
  std::vector<std::pair<std::string, Tensor*>> slots;
  std::vector<Tensor> slot_values;
  if (optimizer) slots = optimizer->slots();
  for (size_t i = 0; i < slots.size(); ++i) slot_values.push_back(Tensor::empty(Shape{arena.numel()}));

  CheckpointMeta meta;
  {
    auto guard = h5::lock();
    const h5::File f = h5::File::open(path);
    meta = read_meta(f);
    check_signature(path, meta.signature, signature);
    if (optimizer)
      DTRAIN_CHECK(meta.optimizer_type == optimizer->config().type, "checkpoint ", path, " was written by optimizer '",
                   meta.optimizer_type, "', the configured optimizer is '", optimizer->config().type, "'");
    for (const Parameter* p : params)
      tensor_dataset(f, "/params/" + p->name, p->shape)
          .read(std::span<float>(values.data<float>() + p->offset, static_cast<size_t>(p->shape.numel())));
    for (size_t i = 0; i < slots.size(); ++i)
      for (const Parameter* p : params)
        tensor_dataset(f, "/optim/" + p->name + "/" + slots[i].first, p->shape)
            .read(std::span<float>(slot_values[i].data<float>() + p->offset, static_cast<size_t>(p->shape.numel())));
  }

  arena.values().copy_from(values);
  for (size_t i = 0; i < slots.size(); ++i) slots[i].second->copy_from(slot_values[i]);
  if (optimizer) optimizer->set_steps(meta.optimizer_steps);
  return meta;
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  std::vector<std::pair<int64_t, std::string>> found;
  fs::directory_iterator it(dir, ec);
  DTRAIN_CHECK(!ec, "cannot list checkpoint directory ", dir, ": ", ec.message());
  for (const fs::directory_entry& entry : it) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, match, checkpoint_name_pattern()) || !entry.is_regular_file(ec)) continue;
    found.emplace_back(std::stoll(match[1].str()), entry.path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> paths;
  for (auto& [step, path] : found) paths.push_back(std::move(path));
  return paths;
}

void prune_checkpoints(const std::string& dir, int keep_last) {
  if (keep_last <= 0) return;
  const std::vector<std::string> all = list_checkpoints(dir);
  for (size_t i = static_cast<size_t>(keep_last); i < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i], ec);
    DTRAIN_CHECK(!ec, "cannot delete old checkpoint ", all[i], ": ", ec.message());
  }
}

std::string find_resumable_checkpoint(const std::string& dir) {
  std::vector<std::byte> buffer;
  for (const std::string& path : list_checkpoints(dir)) {
    try {
      auto guard = h5::lock();
      const h5::File f = h5::File::open(path);
      read_meta(f);
      DTRAIN_CHECK(f.has("/params"), "checkpoint ", path, ": missing group /params");
      read_every_dataset(f, buffer);
      return path;
    } catch (const Error& e) {
      log_warn("resume: skipping checkpoint {}: {}", path, e.what());
    }
  }
  return "";
}

}  // namespace dtrain
