#pragma once
// HDF5 C API behind RAII handles and one checked-call macro. General enough for datasets
// (data/) and checkpoints (launch/): files, groups, whole-array and row-range (hyperslab)
// reads and writes, string/int/float attributes, and atomic writes (FILE.tmp, then rename).
#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/types.h"

namespace dtrain::h5 {

namespace detail {
// One line for a failed HDF5 call: what was done to which file and why, e.g. "cannot write
// run/ckpt/step-60.h5.tmp (H5Dwrite): No space left on device (errno 28)". The cause is the
// operating system's error when HDF5 recorded one, "the file is truncated: ..." for a file shorter
// than its superblock says, else HDF5's innermost messages. Clears HDF5's error stack.
std::string describe_failure(const char* call, const std::string& file);
template <typename T>
T check(T result, const char* call, const std::string& file) {
  if (result < 0) fail(describe_failure(call, file));
  return result;
}
}  // namespace detail

// Checks an HDF5 call's return value (negative = failure) and throws naming the operation, the file
// and the cause (no source text: `call` only gives the HDF5 function's name).
#define DTRAIN_H5_CHECK(call, file) ::dtrain::h5::detail::check((call), #call, (file))

// The Debian HDF5 library is not built thread-safe: a thread that calls HDF5 while another
// thread may (the Loader's prefetch thread) holds this lock around its calls.
std::unique_lock<std::recursive_mutex> lock();

// Turns off HDF5's automatic printing of error stacks (errors become dtrain::Error). Idempotent.
void quiet_errors();

// Owns one hid_t and closes it with the matching H5*close.
class Id {
 public:
  using Closer = herr_t (*)(hid_t);
  Id() = default;
  Id(hid_t id, Closer close) : id_(id), close_(close) {}
  ~Id() { reset(); }
  Id(Id&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Id& operator=(Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }
  void reset() noexcept;
  hid_t release() { return std::exchange(id_, H5I_INVALID_HID); }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// The HDF5 native memory type of T (uint8_t, uint16_t, int32_t, int64_t, float, double).
template <typename T>
hid_t native_type();
hid_t native_type(DType dtype);  // f32, i32, i64, u8 (bf16 is stored as u16 bits)

// An object (file root, group or dataset) that carries attributes.
class Object {
 public:
  hid_t id() const { return id_.get(); }
  const std::string& file() const { return file_; }
  const std::string& name() const { return name_; }  // "/" or "/x"

  bool has_attr(const std::string& attr) const;
  std::vector<std::string> attr_names() const;
  void set_attr(const std::string& attr, const std::string& value) const;
  void set_attr(const std::string& attr, const char* value) const { set_attr(attr, std::string(value)); }
  void set_attr(const std::string& attr, int64_t value) const;
  void set_attr(const std::string& attr, double value) const;
  // Reading converts numeric types; a missing attribute throws naming file, object and attribute.
  std::string attr_string(const std::string& attr) const;
  int64_t attr_int(const std::string& attr) const;
  double attr_float(const std::string& attr) const;
  // The attribute's value as text whatever its type (for `dtrain data info`).
  std::string attr_text(const std::string& attr) const;

 protected:
  Object() = default;
  Object(Id id, std::string file, std::string name)
      : id_(std::move(id)), file_(std::move(file)), name_(std::move(name)) {}
  Id id_;
  std::string file_, name_;
};

struct CreateOptions {
  int64_t chunk_rows = 0;  // 0: contiguous storage; >0: chunked along dim 0
  int gzip_level = 0;      // 0: uncompressed; 1..9 needs chunk_rows > 0
  bool shuffle_filter = false;
};

class Dataset : public Object {
 public:
  Shape shape() const;
  int64_t rows() const { return shape().empty() ? 1 : shape()[0]; }
  int64_t row_elements() const;     // product of all dims but the first
  std::string type_name() const;    // "u8", "u16", "i32", "i64", "f32", "f64", ... or "other"
  DType dtype() const;              // throws for types without a DType (u16, f64)
  int64_t chunk_rows() const;       // 0 when not chunked
  std::string filter_name() const;  // "none", "gzip(4)", "shuffle+gzip(4)" ...

  // Whole-array transfers; HDF5 converts between the file type and T.
  template <typename T>
  void read(std::span<T> out) const {
    read_raw(native_type<T>(), out.data(), out.size(), 0, rows());
  }
  template <typename T>
  void write(std::span<const T> in) const {
    write_raw(native_type<T>(), in.data(), in.size(), 0, rows());
  }
  template <typename T>
  std::vector<T> read_all() const {
    std::vector<T> v(shape().numel());
    read(std::span<T>(v));
    return v;
  }
  // Rows [start, start + count) along dim 0 (a hyperslab); `out` holds count * row_elements().
  template <typename T>
  void read_rows(int64_t start, int64_t count, std::span<T> out) const {
    read_raw(native_type<T>(), out.data(), out.size(), start, count);
  }
  template <typename T>
  void write_rows(int64_t start, int64_t count, std::span<const T> in) const {
    write_raw(native_type<T>(), in.data(), in.size(), start, count);
  }
  void read_rows_raw(hid_t mem_type, void* out, size_t out_elements, int64_t start, int64_t count) const {
    read_raw(mem_type, out, out_elements, start, count);
  }
  void write_rows_raw(hid_t mem_type, const void* in, size_t in_elements, int64_t start, int64_t count) const {
    write_raw(mem_type, in, in_elements, start, count);
  }

 private:
  friend class Group;
  using Object::Object;
  std::pair<Id, Id> row_spaces(const char* what, size_t elements, int64_t start, int64_t count) const;
  void read_raw(hid_t mem_type, void* out, size_t out_elements, int64_t start, int64_t count) const;
  void write_raw(hid_t mem_type, const void* in, size_t in_elements, int64_t start, int64_t count) const;
};

class Group : public Object {
 public:
  bool has(const std::string& path) const;  // a link (dataset or group) at this relative/absolute path
  Dataset dataset(const std::string& path, size_t chunk_cache_bytes = 0) const;  // throws naming file and path
  Group group(const std::string& path) const;
  Group create_group(const std::string& path) const;
  Dataset create_dataset(const std::string& path, hid_t file_type, const Shape& shape,
                         const CreateOptions& options = {}) const;
  Dataset create_dataset(const std::string& path, DType dtype, const Shape& shape,
                         const CreateOptions& options = {}) const {
    return create_dataset(path, native_type(dtype), shape, options);
  }
  std::vector<std::string> children() const;

 protected:
  using Object::Object;
};

class File : public Group {
 public:
  // Opens an existing file; a missing or non-HDF5 file throws naming it.
  static File open(const std::string& path, bool writable = false);
  static File create(const std::string& path);  // truncates an existing file
  void flush() const;
  void close();  // closes now (throws on error); the destructor closes silently otherwise

 private:
  using Group::Group;
};

// Writes a file atomically: create() makes PATH.tmp; commit() closes, fsyncs and renames it to
// PATH; destruction without commit() (an exception) removes PATH.tmp, leaving no partial file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  File& file() { return file_; }
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  void commit();

 private:
  std::string path_, temp_path_;
  File file_;
  bool committed_ = false;
};

}  // namespace dtrain::h5
