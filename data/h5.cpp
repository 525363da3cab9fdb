#include "data/h5.h"

#include <fcntl.h>
#include <unistd.h>

#include <sys/stat.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <sstream>

namespace dtrain::h5 {

namespace detail {
namespace {

// HDF5's error stack, outermost first; clears it.
std::vector<std::string> error_stack() {
  std::vector<std::string> messages;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
        auto* out = static_cast<std::vector<std::string>*>(data);
        if (e->desc && *e->desc) out->emplace_back(e->desc);
        return 0;
      },
      &messages);
  H5Eclear2(H5E_DEFAULT);
  return messages;
}

// The text after `key` up to `end` in `s`, or "".
std::string field(const std::string& s, const std::string& key, char end) {
  const size_t at = s.find(key);
  if (at == std::string::npos) return {};
  const size_t from = at + key.size();
  return s.substr(from, s.find(end, from) - from);
}

// Why the call failed, from the stack: the OS error the file driver recorded, a truncation, or
// HDF5's innermost two distinct messages.
std::string cause(const std::vector<std::string>& stack) {
  for (const std::string& m : stack) {
    const std::string os = field(m, "error message = '", '\'');
    if (!os.empty()) return os + " (errno " + field(m, "errno = ", ',') + ")";
    if (m.find("truncated file") != std::string::npos)
      return "the file is truncated: " + field(m, "eof = ", ',') + " bytes, its HDF5 superblock records " +
             field(m, "stored_eof = ", ',');
  }
  std::string out;
  for (size_t i = stack.size(), kept = 0; i-- > 0 && kept < 2;) {
    if (out.find(stack[i]) != std::string::npos) continue;
    out = out.empty() ? stack[i] : stack[i] + "; " + out;
    ++kept;
  }
  return out.empty() ? "HDF5 gave no reason" : out;
}

// "open", "write", ...: what the HDF5 function does to the file, for messages.
std::string verb(const std::string& function) {
  static const std::pair<const char*, const char*> kVerbs[] = {{"H5Fopen", "open"},
                                                               {"H5Fcreate", "create"},
                                                               {"H5Fclose", "close"},
                                                               {"H5Fflush", "flush"},
                                                               {"H5Dwrite", "write"},
                                                               {"H5Dread", "read"},
                                                               {"H5Dcreate2", "create a dataset in"},
                                                               {"H5Dopen2", "open a dataset of"},
                                                               {"H5Acreate2", "create an attribute in"},
                                                               {"H5Awrite", "write an attribute of"},
                                                               {"H5Aread", "read an attribute of"},
                                                               {"H5Aopen", "open an attribute of"}};
  for (const auto& [name, what] : kVerbs)
    if (function == name) return what;
  return "use";
}

}  // namespace

std::string describe_failure(const char* call, const std::string& file) {
  const std::string text(call);
  const std::string function = text.substr(0, text.find('('));
  return "cannot " + verb(function) + " " + file + " (HDF5 " + function + "): " + cause(error_stack());
}

}  // namespace detail

std::unique_lock<std::recursive_mutex> lock() {
  static std::recursive_mutex library_mutex;  // guards every HDF5 call made under it
  return std::unique_lock<std::recursive_mutex>(library_mutex);
}

void quiet_errors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

void Id::reset() noexcept {
  if (id_ >= 0 && close_) close_(id_);
  id_ = H5I_INVALID_HID;
}

template <>
hid_t native_type<uint8_t>() {
  return H5T_NATIVE_UINT8;
}
template <>
hid_t native_type<uint16_t>() {
  return H5T_NATIVE_UINT16;
}
template <>
hid_t native_type<int32_t>() {
  return H5T_NATIVE_INT32;
}
template <>
hid_t native_type<int64_t>() {
  return H5T_NATIVE_INT64;
}
template <>
hid_t native_type<float>() {
  return H5T_NATIVE_FLOAT;
}
template <>
hid_t native_type<double>() {
  return H5T_NATIVE_DOUBLE;
}

hid_t native_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return H5T_NATIVE_FLOAT;
    case DType::bf16: return H5T_NATIVE_UINT16;
    case DType::i32: return H5T_NATIVE_INT32;
    case DType::i64: return H5T_NATIVE_INT64;
    case DType::u8: return H5T_NATIVE_UINT8;
  }
  fail("h5::native_type: unknown dtype");
}

namespace {

std::string type_name_of(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    return dtrain::detail::concat(is_signed ? "i" : "u", size * 8);
  }
  if (cls == H5T_FLOAT) return dtrain::detail::concat("f", size * 8);
  if (cls == H5T_STRING) return "string";
  return "other";
}

std::string describe(const Object& o) { return o.file() + ":" + o.name(); }

Id open_attr(const Object& o, const std::string& attr) {
  DTRAIN_CHECK(o.has_attr(attr), o.file(), ": ", o.name(), " has no attribute '", attr, "'");
  return Id(DTRAIN_H5_CHECK(H5Aopen(o.id(), attr.c_str(), H5P_DEFAULT), o.file()), H5Aclose);
}

void write_attr(const Object& o, const std::string& attr, hid_t type, const void* value) {
  if (o.has_attr(attr)) DTRAIN_H5_CHECK(H5Adelete(o.id(), attr.c_str()), o.file());
  Id space(DTRAIN_H5_CHECK(H5Screate(H5S_SCALAR), o.file()), H5Sclose);
  Id a(DTRAIN_H5_CHECK(H5Acreate2(o.id(), attr.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), o.file()),
       H5Aclose);
  DTRAIN_H5_CHECK(H5Awrite(a.get(), type, value), o.file());
}

template <typename T>
T read_numeric_attr(const Object& o, const std::string& attr, hid_t mem_type) {
  Id a = open_attr(o, attr);
  Id type(DTRAIN_H5_CHECK(H5Aget_type(a.get()), o.file()), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  DTRAIN_CHECK(cls == H5T_INTEGER || cls == H5T_FLOAT, o.file(), ": attribute '", attr, "' of ", o.name(), " is ",
               type_name_of(type.get()), ", expected a number");
  Id space(DTRAIN_H5_CHECK(H5Aget_space(a.get()), o.file()), H5Sclose);
  DTRAIN_CHECK(H5Sget_simple_extent_npoints(space.get()) == 1, o.file(), ": attribute '", attr, "' of ", o.name(),
               " is not a scalar");
  T value{};
  DTRAIN_H5_CHECK(H5Aread(a.get(), mem_type, &value), o.file());
  return value;
}

// Selects rows [start, start+count) of `space` (rank >= 1), or everything for a scalar.
void select_rows(hid_t space, const Shape& shape, int64_t start, int64_t count, const std::string& what) {
  if (shape.empty()) return;
  DTRAIN_CHECK(start >= 0 && count >= 0 && start + count <= shape[0], what, ": rows [", start, ", ", start + count,
               ") outside the ", shape[0], " rows");
  std::vector<hsize_t> offset(shape.size(), 0), extent(shape.begin(), shape.end());
  offset[0] = static_cast<hsize_t>(start);
  extent[0] = static_cast<hsize_t>(count);
  DTRAIN_H5_CHECK(H5Sselect_hyperslab(space, H5S_SELECT_SET, offset.data(), nullptr, extent.data(), nullptr), what);
}

// A memory dataspace shaped like rows [0, count) of `shape`: matching the file selection's
// shape lets HDF5 copy whole chunks rather than map them element by element.
Id row_space(const Shape& shape, int64_t count, const std::string& file) {
  if (shape.empty()) return Id(DTRAIN_H5_CHECK(H5Screate(H5S_SCALAR), file), H5Sclose);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  dims[0] = static_cast<hsize_t>(count);
  return Id(DTRAIN_H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), file), H5Sclose);
}

}  // namespace

bool Object::has_attr(const std::string& attr) const {
  return DTRAIN_H5_CHECK(H5Aexists(id(), attr.c_str()), file_) > 0;
}

std::vector<std::string> Object::attr_names() const {
  std::vector<std::string> names;
  H5O_info_t info;
  DTRAIN_H5_CHECK(H5Oget_info2(id(), &info, H5O_INFO_NUM_ATTRS), file_);
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    const ssize_t len = DTRAIN_H5_CHECK(
        H5Aget_name_by_idx(id(), ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT), file_);
    std::string name(static_cast<size_t>(len) + 1, '\0');
    if (H5Aget_name_by_idx(id(), ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT) < 0)
      DTRAIN_H5_CHECK(
          H5Aget_name_by_idx(id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT), file_);
    name.resize(static_cast<size_t>(len));
    names.push_back(name);
  }
  return names;
}

void Object::set_attr(const std::string& attr, const std::string& value) const {
  Id type(DTRAIN_H5_CHECK(H5Tcopy(H5T_C_S1), file_), H5Tclose);
  DTRAIN_H5_CHECK(H5Tset_size(type.get(), std::max<size_t>(value.size(), 1)), file_);
  DTRAIN_H5_CHECK(H5Tset_cset(type.get(), H5T_CSET_UTF8), file_);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_attr(*this, attr, type.get(), padded.data());
}

void Object::set_attr(const std::string& attr, int64_t value) const {
  write_attr(*this, attr, H5T_NATIVE_INT64, &value);
}
void Object::set_attr(const std::string& attr, double value) const {
  write_attr(*this, attr, H5T_NATIVE_DOUBLE, &value);
}

std::string Object::attr_string(const std::string& attr) const {
  Id a = open_attr(*this, attr);
  Id type(DTRAIN_H5_CHECK(H5Aget_type(a.get()), file_), H5Tclose);
  DTRAIN_CHECK(H5Tget_class(type.get()) == H5T_STRING, file_, ": attribute '", attr, "' of ", name_, " is ",
               type_name_of(type.get()), ", expected a string");
  if (H5Tis_variable_str(type.get()) > 0) {
    Id mem(DTRAIN_H5_CHECK(H5Tcopy(H5T_C_S1), file_), H5Tclose);
    DTRAIN_H5_CHECK(H5Tset_size(mem.get(), H5T_VARIABLE), file_);
    char* s = nullptr;
    DTRAIN_H5_CHECK(H5Aread(a.get(), mem.get(), &s), file_);
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  std::string out(H5Tget_size(type.get()), '\0');
  DTRAIN_H5_CHECK(H5Aread(a.get(), type.get(), out.data()), file_);
  out.resize(std::strlen(out.c_str()));
  return out;
}

int64_t Object::attr_int(const std::string& attr) const {
  return read_numeric_attr<int64_t>(*this, attr, H5T_NATIVE_INT64);
}
double Object::attr_float(const std::string& attr) const {
  return read_numeric_attr<double>(*this, attr, H5T_NATIVE_DOUBLE);
}

std::string Object::attr_text(const std::string& attr) const {
  Id a = open_attr(*this, attr);
  Id type(DTRAIN_H5_CHECK(H5Aget_type(a.get()), file_), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls == H5T_STRING) return attr_string(attr);
  Id space(DTRAIN_H5_CHECK(H5Aget_space(a.get()), file_), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && n >= 1 && n <= 16) {
    std::vector<double> values(static_cast<size_t>(n));
    DTRAIN_H5_CHECK(H5Aread(a.get(), H5T_NATIVE_DOUBLE, values.data()), file_);
    std::ostringstream os;
    if (n > 1) os << '[';
    for (size_t i = 0; i < values.size(); ++i) os << (i ? ", " : "") << values[i];
    if (n > 1) os << ']';
    return os.str();
  }
  return dtrain::detail::concat("<", type_name_of(type.get()), " x ", n, ">");
}

Shape Dataset::shape() const {
  Id space(DTRAIN_H5_CHECK(H5Dget_space(id()), file_), H5Sclose);
  const int rank = DTRAIN_H5_CHECK(H5Sget_simple_extent_ndims(space.get()), file_);
  DTRAIN_CHECK(rank <= Shape::kMaxDims, describe(*this), " has ", rank, " dimensions (at most ", Shape::kMaxDims, ")");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  DTRAIN_H5_CHECK(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), file_);
  return Shape(dims.begin(), dims.end());
}

int64_t Dataset::row_elements() const {
  const Shape s = shape();
  int64_t n = 1;
  for (int i = 1; i < s.size(); ++i) n *= s[i];
  return n;
}

std::string Dataset::type_name() const {
  Id type(DTRAIN_H5_CHECK(H5Dget_type(id()), file_), H5Tclose);
  return type_name_of(type.get());
}

DType Dataset::dtype() const {
  const std::string t = type_name();
  if (t == "f32") return DType::f32;
  if (t == "i32") return DType::i32;
  if (t == "i64") return DType::i64;
  if (t == "u8") return DType::u8;
  fail(describe(*this), " has element type ", t, ", which has no tensor dtype (f32, i32, i64, u8)");
}

int64_t Dataset::chunk_rows() const {
  Id plist(DTRAIN_H5_CHECK(H5Dget_create_plist(id()), file_), H5Pclose);
  if (H5Pget_layout(plist.get()) != H5D_CHUNKED) return 0;
  hsize_t dims[H5S_MAX_RANK];
  const int rank = DTRAIN_H5_CHECK(H5Pget_chunk(plist.get(), H5S_MAX_RANK, dims), file_);
  return rank > 0 ? static_cast<int64_t>(dims[0]) : 0;
}

std::string Dataset::filter_name() const {
  Id plist(DTRAIN_H5_CHECK(H5Dget_create_plist(id()), file_), H5Pclose);
  const int n = H5Pget_nfilters(plist.get());
  if (n <= 0) return "none";
  std::string out;
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, config = 0;
    size_t nvalues = 4;
    unsigned values[4] = {};
    char name[64] = {};
    const H5Z_filter_t f =
        H5Pget_filter2(plist.get(), static_cast<unsigned>(i), &flags, &nvalues, values, sizeof name, name, &config);
    if (!out.empty()) out += "+";
    if (f == H5Z_FILTER_DEFLATE)
      out += dtrain::detail::concat("gzip(", nvalues > 0 ? values[0] : 0, ")");
    else if (f == H5Z_FILTER_SHUFFLE)
      out += "shuffle";
    else
      out += name[0] ? std::string(name) : dtrain::detail::concat("filter", f);
  }
  return out;
}

// The file and memory dataspaces for rows [start, start + count), after checking the buffer size;
// both undefined when there is nothing to transfer.
std::pair<Id, Id> Dataset::row_spaces(const char* what, size_t elements, int64_t start, int64_t count) const {
  const Shape s = shape();
  const int64_t need = s.empty() ? 1 : count * row_elements();
  DTRAIN_CHECK(static_cast<int64_t>(elements) == need, describe(*this), ": ", what, " of ", count, " rows needs ", need,
               " elements, buffer holds ", elements);
  if (need == 0) return {};
  Id file_space(DTRAIN_H5_CHECK(H5Dget_space(id()), file_), H5Sclose);
  select_rows(file_space.get(), s, start, count, describe(*this));
  return {std::move(file_space), row_space(s, count, file_)};
}

void Dataset::read_raw(hid_t mem_type, void* out, size_t out_elements, int64_t start, int64_t count) const {
  const auto [file_space, mem_space] = row_spaces("read", out_elements, start, count);
  if (file_space) DTRAIN_H5_CHECK(H5Dread(id(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out), file_);
}

void Dataset::write_raw(hid_t mem_type, const void* in, size_t in_elements, int64_t start, int64_t count) const {
  const auto [file_space, mem_space] = row_spaces("write", in_elements, start, count);
  if (file_space) DTRAIN_H5_CHECK(H5Dwrite(id(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, in), file_);
}

bool Group::has(const std::string& path) const {
  // Check each prefix: H5Lexists fails (rather than returning 0) when an intermediate group is missing.
  std::string prefix = path.starts_with('/') ? "/" : "";
  std::stringstream parts(path);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    if (!prefix.empty() && prefix.back() != '/') prefix += '/';
    prefix += part;
    if (H5Lexists(id(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

Dataset Group::dataset(const std::string& path, size_t chunk_cache_bytes) const {
  DTRAIN_CHECK(has(path), file_, ": no dataset ", path);
  Id dapl(DTRAIN_H5_CHECK(H5Pcreate(H5P_DATASET_ACCESS), file_), H5Pclose);
  if (chunk_cache_bytes > 0) DTRAIN_H5_CHECK(H5Pset_chunk_cache(dapl.get(), 100003, chunk_cache_bytes, 1.0), file_);
  Id d(DTRAIN_H5_CHECK(H5Dopen2(id(), path.c_str(), dapl.get()), file_), H5Dclose);
  return Dataset(std::move(d), file_, path);
}

Group Group::group(const std::string& path) const {
  DTRAIN_CHECK(has(path), file_, ": no group ", path);
  return Group(Id(DTRAIN_H5_CHECK(H5Gopen2(id(), path.c_str(), H5P_DEFAULT), file_), H5Gclose), file_, path);
}

Group Group::create_group(const std::string& path) const {
  Id lcpl(DTRAIN_H5_CHECK(H5Pcreate(H5P_LINK_CREATE), file_), H5Pclose);
  DTRAIN_H5_CHECK(H5Pset_create_intermediate_group(lcpl.get(), 1), file_);
  return Group(
      Id(DTRAIN_H5_CHECK(H5Gcreate2(id(), path.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), file_), H5Gclose), file_,
      path);
}

Dataset Group::create_dataset(const std::string& path, hid_t file_type, const Shape& shape,
                              const CreateOptions& options) const {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Id space(DTRAIN_H5_CHECK(shape.empty() ? H5Screate(H5S_SCALAR)
                                         : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                           file_),
           H5Sclose);
  Id dcpl(DTRAIN_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), file_), H5Pclose);
  if (options.chunk_rows > 0 && !shape.empty() && shape.numel() > 0) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = static_cast<hsize_t>(std::min<int64_t>(options.chunk_rows, shape[0]));
    DTRAIN_H5_CHECK(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), file_);
    if (options.shuffle_filter) DTRAIN_H5_CHECK(H5Pset_shuffle(dcpl.get()), file_);
    if (options.gzip_level > 0)
      DTRAIN_H5_CHECK(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(options.gzip_level)), file_);
  }
  Id lcpl(DTRAIN_H5_CHECK(H5Pcreate(H5P_LINK_CREATE), file_), H5Pclose);
  DTRAIN_H5_CHECK(H5Pset_create_intermediate_group(lcpl.get(), 1), file_);
  Id d(DTRAIN_H5_CHECK(H5Dcreate2(id(), path.c_str(), file_type, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                       file_),
       H5Dclose);
  return Dataset(std::move(d), file_, path);
}

std::vector<std::string> Group::children() const {
  std::vector<std::string> names;
  DTRAIN_H5_CHECK(H5Literate(
                      id(), H5_INDEX_NAME, H5_ITER_INC, nullptr,
                      [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
                        static_cast<std::vector<std::string>*>(data)->emplace_back(name);
                        return 0;
                      },
                      &names),
                  file_);
  return names;
}

File File::open(const std::string& path, bool writable) {
  quiet_errors();
  struct stat st;
  DTRAIN_CHECK(::stat(path.c_str(), &st) == 0, path, ": cannot open: ", std::strerror(errno));
  DTRAIN_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");
  DTRAIN_CHECK(H5Fis_hdf5(path.c_str()) > 0, path, ": not an HDF5 file");
  hid_t f = DTRAIN_H5_CHECK(H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT), path);
  return File(Id(f, H5Fclose), path, "/");
}

File File::create(const std::string& path) {
  quiet_errors();
  // The 1.8+ file format stores large attributes densely: no 64 KiB limit per attribute (a
  // checkpoint's signature and config grow with the model).
  Id access(DTRAIN_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS), path), H5Pclose);
  DTRAIN_H5_CHECK(H5Pset_libver_bounds(access.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST), path);
  hid_t f = DTRAIN_H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get()), path);
  return File(Id(f, H5Fclose), path, "/");
}

void File::flush() const { DTRAIN_H5_CHECK(H5Fflush(id(), H5F_SCOPE_GLOBAL), file_); }

void File::close() {
  if (!id_) return;
  const hid_t f = id_.release();  // a failed close must not be retried by the destructor
  DTRAIN_H5_CHECK(H5Fclose(f), file_);
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), temp_path_(path_ + ".tmp") {
  file_ = File::create(temp_path_);
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  file_ = File();
  std::error_code ec;
  std::filesystem::remove(temp_path_, ec);
}

void AtomicFile::commit() {
  file_.close();
  const int fd = ::open(temp_path_.c_str(), O_RDONLY);
  DTRAIN_CHECK(fd >= 0, temp_path_, ": cannot reopen to sync: ", std::strerror(errno));
  const int synced = ::fsync(fd);
  ::close(fd);
  DTRAIN_CHECK(synced == 0, temp_path_, ": fsync failed: ", std::strerror(errno));
  DTRAIN_CHECK(std::rename(temp_path_.c_str(), path_.c_str()) == 0, "cannot rename ", temp_path_, " to ", path_, ": ",
               std::strerror(errno));
  committed_ = true;
}

}  // namespace dtrain::h5
