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
#include "core/hash.h"
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
    fail("checkpoint ", path, ": ", field, ": ", e.what());
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

// Opens dataset `name` and checks it holds `dtype` elements (f32, u8) of `shape`.
h5::Dataset tensor_dataset(const h5::File& f, const std::string& name, const Shape& shape,
                           const std::string& dtype = "f32") {
  DTRAIN_CHECK(f.has(name), "checkpoint ", f.file(), ": missing dataset ", name, " (expected ", dtype, " ", shape.str(),
               ")");
  h5::Dataset d = f.dataset(name);
  const Shape have = d.shape();
  const std::string type = d.type_name();
  DTRAIN_CHECK(have == shape && type == dtype, "checkpoint ", f.file(), ": dataset ", name, " is ", type, " ",
               have.str(), ", expected ", dtype, " ", shape.str());
  return d;
}

// ---- integrity: every dataset carries the checksum of its bytes (attribute "checksum"), the root
// attributes one of their canonical text ("meta_checksum"); format 1 files have neither.

constexpr const char* kChecksumAttr = "checksum";

std::string checksum_text(uint64_t digest) {
  char text[32];
  std::snprintf(text, sizeof text, "xxh3:%016llx", static_cast<unsigned long long>(digest));
  return text;
}
std::string checksum_text(const void* data, size_t bytes) { return checksum_text(xxh3_64(data, bytes)); }

// Throws unless `digest` (XXH3 of the dataset's bytes as read) is the checksum stored with `d`.
void check_digest(const h5::Dataset& d, uint64_t digest) {
  DTRAIN_CHECK(d.has_attr(kChecksumAttr), "no checksum is stored with it (the file is damaged)");
  const std::string stored = d.attr_string(kChecksumAttr), computed = checksum_text(digest);
  DTRAIN_CHECK(stored == computed, "its bytes do not match the checksum stored with them (", stored, " stored, ",
               computed, " read)");
}

void check_checksum(const h5::Dataset& d, const void* data, size_t bytes, int64_t format) {
  if (format >= 2) check_digest(d, xxh3_64(data, bytes));
}

// The weight-decay group of every parameter (u8, registration order); files before it have none.
constexpr const char* kWeightDecayGroups = "/param_groups/weight_decay";

// Creates dataset `name` of `file_type`, writes `data` (elements of `mem_type`) and its checksum.
void write_checked(const h5::File& f, const std::string& name, hid_t file_type, hid_t mem_type, const Shape& shape,
                   const void* data, size_t elements, size_t bytes) {
  h5::Dataset d = f.create_dataset(name, file_type, shape);
  d.write_rows_raw(mem_type, data, elements, 0, d.rows());
  d.set_attr(kChecksumAttr, checksum_text(data, bytes));
}

// Reads the whole dataset `name` as `mem_type` into `out` and checks it against its checksum.
// Reads the whole dataset as `mem_type` into `out` and checks it against its checksum. (Reading in
// pieces hashed while in cache, on this thread or a second one, measured no faster.)
void read_checked(const h5::Dataset& d, hid_t mem_type, void* out, size_t elements, size_t bytes, int64_t format) {
  d.read_rows_raw(mem_type, out, elements, 0, d.rows());
  check_checksum(d, out, bytes, format);
}

// The canonical text of the root attributes that "meta_checksum" covers.
std::string meta_text(const CheckpointMeta& m, int64_t format) {
  char numbers[160];
  std::snprintf(numbers, sizeof numbers, "%.17g\n%.17g\n%.17g\n%.17g\n", m.test_accuracy, m.test_loss, m.x_scale,
                m.x_shift);
  return detail::concat("format ", format, "\nstep ", m.step, "\nepoch ", m.epoch, "\nworld ", m.world_size, "\n",
                        m.optimizer_type, "\n", m.optimizer_steps, "\n", m.dtrain_version, "\n", m.input_dtype, "\n",
                        numbers, m.config, "\n", join_lines(m.signature));
}

int64_t format_of(const h5::File& f) { return f.has_attr("format_version") ? int_attr(f, "format_version") : 1; }

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
  const int64_t format = format_of(f);
  DTRAIN_CHECK(format <= kCheckpointFormat, "checkpoint ", path, " has format ", format, "; this dtrain reads up to ",
               kCheckpointFormat, " (written by a newer dtrain)");
  if (format >= 2)
    DTRAIN_CHECK(
        string_attr(f, "meta_checksum") == checksum_text(meta_text(m, format).data(), meta_text(m, format).size()),
        "checkpoint ", path,
        ": its attributes (step, config, signature, ...) are damaged: they do not match "
        "the checksum stored with them");

  m.rng_offsets.resize(static_cast<size_t>(m.world_size));
  for (int r = 0; r < m.world_size; ++r) {
    const std::string name = "/rng/" + std::to_string(r);
    DTRAIN_CHECK(f.has(name), "checkpoint ", path, ": missing dataset ", name, " (world_size is ", m.world_size, ")");
    read_field(path, "dataset " + name, [&] {
      h5::Dataset d = f.dataset(name);
      DTRAIN_CHECK(d.shape() == Shape{1}, "shape ", d.shape().str(), ", expected [1]");
      read_checked(d, H5T_NATIVE_UINT64, &m.rng_offsets[static_cast<size_t>(r)], 1, 8, format);
    });
  }
  DTRAIN_CHECK(f.has("/sampler"), "checkpoint ", path, ": missing dataset /sampler (expected i64 [2])");
  read_field(path, "dataset /sampler", [&] {
    h5::Dataset d = f.dataset("/sampler");
    DTRAIN_CHECK(d.shape() == Shape{2}, "shape ", d.shape().str(), ", expected [2]");
    int64_t s[2];
    read_checked(d, H5T_NATIVE_INT64, s, 2, sizeof s, format);
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

// Reads every dataset in group `g` and below in full and checks it against its checksum, adding one
// entry per dataset to `parts` (truncation and damaged bytes show up here).
void verify_datasets(const h5::Group& g, int64_t format, std::vector<std::byte>& buffer,
                     std::vector<CheckpointCheck>& parts) {
  for (const std::string& child : g.children()) {
    const std::string path = g.name() == "/" ? "/" + child : g.name() + "/" + child;
    CheckpointCheck check{path, "", ""};
    try {
      h5::Id object(DTRAIN_H5_CHECK(H5Oopen(g.id(), child.c_str(), H5P_DEFAULT), g.file()), H5Oclose);
      const H5I_type_t kind = H5Iget_type(object.get());
      object.reset();
      if (kind == H5I_GROUP) {
        verify_datasets(g.group(path), format, buffer, parts);
        continue;
      }
      if (kind != H5I_DATASET) continue;
      h5::Dataset d = g.dataset(path);
      check.what = d.type_name() + " " + d.shape().str();
      h5::Id file_type(DTRAIN_H5_CHECK(H5Dget_type(d.id()), g.file()), H5Tclose);
      h5::Id mem_type(DTRAIN_H5_CHECK(H5Tget_native_type(file_type.get(), H5T_DIR_ASCEND), g.file()), H5Tclose);
      const int64_t n = d.shape().numel();
      const size_t bytes = static_cast<size_t>(n) * H5Tget_size(mem_type.get());
      if (buffer.size() < bytes) buffer.resize(bytes);
      read_checked(d, mem_type.get(), buffer.data(), static_cast<size_t>(n), bytes, format);
    } catch (const Error& e) {
      check.problem = e.what();
    }
    parts.push_back(std::move(check));
  }
}

// The root attributes. The writer stamps what it knows better than the caller: its version, and the
// optimizer's own type and step count when one is given.
void write_meta_attrs(h5::File& f, const CheckpointMeta& written, const Optimizer* optimizer) {
  CheckpointMeta meta = written;
  if (optimizer) {
    meta.optimizer_type = optimizer->config().type;
    meta.optimizer_steps = optimizer->steps();
  }
  meta.dtrain_version = DTRAIN_VERSION;
  set_root_attr(f, "format_version", kCheckpointFormat);
  const std::string canonical = meta_text(meta, kCheckpointFormat);
  set_root_attr(f, "meta_checksum", checksum_text(canonical.data(), canonical.size()));
  set_root_attr(f, "step", meta.step);
  set_root_attr(f, "epoch", meta.epoch);
  set_root_attr(f, "world_size", static_cast<int64_t>(meta.world_size));
  set_root_attr(f, "optimizer_type", meta.optimizer_type);
  set_root_attr(f, "optimizer_steps", meta.optimizer_steps);
  set_root_attr(f, "config", meta.config);
  set_root_attr(f, "signature", join_lines(meta.signature));
  set_root_attr(f, "dtrain_version", meta.dtrain_version);
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
  const auto write_f32 = [&](const std::string& name, const Shape& shape, const Tensor& v) {
    write_checked(f, name, h5::native_type(DType::f32), H5T_NATIVE_FLOAT, shape, v.data<float>(),
                  static_cast<size_t>(v.numel()), static_cast<size_t>(v.nbytes()));
  };
  for (size_t i = 0; i < params.size(); ++i) write_f32("/params/" + params[i]->name, params[i]->shape, values[i]);
  for (const auto& [slot_name, slot] : slots)
    for (const Parameter* p : params)
      write_f32("/optim/" + p->name + "/" + slot_name, p->shape, slot.flat_range(p->offset, p->shape.numel()));
  for (int r = 0; r < meta.world_size; ++r)
    write_checked(f, "/rng/" + std::to_string(r), H5T_STD_U64LE, H5T_NATIVE_UINT64, Shape{1},
                  &meta.rng_offsets[static_cast<size_t>(r)], 1, sizeof(uint64_t));
  // The optimizer's parameter groups: 1 where weight decay applies, in registration order.
  std::vector<uint8_t> decay;
  for (const Parameter* p : params) decay.push_back(p->weight_decay ? 1 : 0);
  write_checked(f, kWeightDecayGroups, H5T_STD_U8LE, H5T_NATIVE_UINT8, Shape{static_cast<int64_t>(decay.size())},
                decay.data(), decay.size(), decay.size());
  const int64_t sampler[2] = {meta.sampler.epoch, meta.sampler.position};
  write_checked(f, "/sampler", H5T_STD_I64LE, H5T_NATIVE_INT64, Shape{2}, sampler, 2, sizeof sampler);

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

// The groups stored in the file must be the model's: an optimizer state trained under other groups
// would continue under a different rule.
void check_weight_decay_groups(const std::string& path, const h5::File& f, const std::vector<Parameter*>& params,
                               int64_t format) {
  std::vector<uint8_t> stored(params.size());
  read_field(path, std::string("dataset ") + kWeightDecayGroups, [&] {
    const h5::Dataset d = tensor_dataset(f, kWeightDecayGroups, Shape{static_cast<int64_t>(params.size())}, "u8");
    read_checked(d, H5T_NATIVE_UINT8, stored.data(), stored.size(), stored.size(), format);
  });
  for (size_t i = 0; i < params.size(); ++i)
    DTRAIN_CHECK((stored[i] != 0) == params[i]->weight_decay, "checkpoint ", path, ": parameter '", params[i]->name,
                 "' was trained ", stored[i] ? "with" : "without", " weight decay, the model has it ",
                 params[i]->weight_decay ? "with" : "without");
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
    const int64_t format = format_of(f);
    if (format < 2) log_warn("checkpoint {} has no checksums (format {}): its data cannot be verified", path, format);
    const auto read_f32 = [&](const std::string& name, const Parameter& p, Tensor& into) {
      const size_t n = static_cast<size_t>(p.shape.numel());
      read_field(path, "dataset " + name, [&] {
        read_checked(tensor_dataset(f, name, p.shape), H5T_NATIVE_FLOAT, into.data<float>() + p.offset, n,
                     n * sizeof(float), format);
      });
    };
    for (const Parameter* p : params) read_f32("/params/" + p->name, *p, values);
    if (f.has(kWeightDecayGroups)) check_weight_decay_groups(path, f, params, format);
    for (size_t i = 0; i < slots.size(); ++i)
      for (const Parameter* p : params) read_f32("/optim/" + p->name + "/" + slots[i].first, *p, slot_values[i]);
  }

  arena.values().copy_from(values);
  for (size_t i = 0; i < slots.size(); ++i) slots[i].second->copy_from(slot_values[i]);
  if (optimizer) optimizer->set_steps(meta.optimizer_steps);
  return meta;
}

CheckpointModel load_checkpoint_model(const std::string& path) {
  CheckpointModel out;
  out.meta = read_checkpoint_meta(path);
  out.config = parse_config_text(out.meta.config, path + " (config attribute)");
  out.model = create_model(out.config.model);
  out.model->build(Device::cpu(), 0);
  load_checkpoint(path, out.model->arena(), nullptr, out.model->signature());
  return out;
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

bool CheckpointReport::ok() const {
  if (!error.empty()) return false;
  for (const CheckpointCheck& c : parts)
    if (!c.problem.empty()) return false;
  return true;
}

std::string CheckpointReport::first_problem() const {
  if (!error.empty()) return error;
  for (const CheckpointCheck& c : parts)
    if (!c.problem.empty()) return c.name == "meta" ? c.problem : "dataset " + c.name + ": " + c.problem;
  return "";
}

CheckpointReport verify_checkpoint(const std::string& path) {
  CheckpointReport r;
  r.path = path;
  std::vector<std::byte> buffer;
  try {
    auto guard = h5::lock();
    const h5::File f = h5::File::open(path);
    r.format = format_of(f);
    CheckpointCheck meta{"meta", "root attributes", ""};
    try {
      r.step = read_meta(f).step;
    } catch (const Error& e) {
      meta.problem = e.what();
    }
    r.parts.push_back(std::move(meta));
    if (!f.has("/params")) r.parts.push_back({"/params", "group", "missing"});
    verify_datasets(f, r.format, buffer, r.parts);
  } catch (const Error& e) {
    r.error = e.what();
  }
  return r;
}

ResumeChoice find_resumable_checkpoint(const std::string& dir) {
  ResumeChoice choice;
  for (const std::string& path : list_checkpoints(dir)) {
    const CheckpointReport report = verify_checkpoint(path);
    if (report.ok()) {
      choice.path = path;
      return choice;
    }
    // Renamed, not deleted: the evidence stays, and keep-last rotation (step-N.h5 only) passes it by.
    const std::string corrupt = path + ".corrupt";
    std::error_code ec;
    fs::rename(path, corrupt, ec);
    log_warn("resume: skipping checkpoint {}: {}; {}", path, report.first_problem(),
             ec ? "it could not be renamed: " + ec.message() : "renamed to " + corrupt);
    choice.rejected.emplace_back(ec ? path : corrupt, report.first_problem());
  }
  // Damaged files an earlier resume set aside still count: none of them is a reason to start over.
  std::error_code ec;
  if (fs::is_directory(dir, ec))
    for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
      const std::string name = entry.path().string();
      const bool listed =
          std::any_of(choice.rejected.begin(), choice.rejected.end(), [&](const auto& r) { return r.first == name; });
      if (!listed && name.ends_with(".h5.corrupt"))
        choice.rejected.emplace_back(name, "set aside as damaged by an earlier --resume auto");
    }
  return choice;
}

}  // namespace dtrain
