#include "data/loader.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <numeric>
#include <utility>

#include <sys/mman.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/kernels.h"
#include "core/rng.h"
#include "data/h5.h"

namespace dtrain::data {

namespace {

// Anonymous memory for a block of /x rows, backed by huge pages where the kernel allows (page
// faults on tens of MB of 4 KiB pages cost more than the read itself). Uninitialised until read.
class RowBuffer {
 public:
  RowBuffer() = default;
  explicit RowBuffer(int64_t bytes) : bytes_(std::max<int64_t>(bytes, 1)) {
    void* p = ::mmap(nullptr, static_cast<size_t>(bytes_), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    DTRAIN_CHECK(p != MAP_FAILED, "loader: cannot map ", bytes_, " bytes for a block of samples");
    ::madvise(p, static_cast<size_t>(bytes_), MADV_HUGEPAGE);
    data_ = static_cast<uint8_t*>(p);
  }
  ~RowBuffer() {
    if (data_) ::munmap(data_, static_cast<size_t>(bytes_));
  }
  RowBuffer(RowBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  RowBuffer& operator=(RowBuffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  uint8_t* get() const { return data_; }
  int64_t bytes() const { return data_ ? bytes_ : 0; }

 private:
  uint8_t* data_ = nullptr;
  int64_t bytes_ = 0;
};

// Rows read per hyperslab when /x is not chunked.
constexpr int64_t kContiguousWindowBytes = 4 << 20;

}  // namespace

// Produces one epoch's batches (from a start position) in sampler order. Runs on the prefetch
// thread, or on the caller's with prefetch_depth 0; HDF5 calls hold h5::lock().
class Loader::Producer {
 public:
  Producer(const DatasetInfo& info, const LoaderOptions& options, std::shared_ptr<const std::vector<int64_t>> labels,
           int64_t block_samples, bool resident)
      : info_(info),
        options_(options),
        labels_(std::move(labels)),
        block_samples_(block_samples),
        resident_(resident),
        raw_(options.raw_u8 && info.x_dtype == DType::u8) {
    auto lock = h5::lock();
    file_ = h5::File::open(info.path);
    // A cache that holds a few chunks, so rows read one window at a time decompress each chunk once.
    const size_t cache =
        static_cast<size_t>(std::clamp<int64_t>(info.chunk_rows * info.sample_bytes() * 4, 1 << 20, 256 << 20));
    x_ = file_.dataset("/x", cache);
    window_rows_ = info.chunk_rows > 0
                       ? info.chunk_rows
                       : std::max<int64_t>(1, kContiguousWindowBytes / std::max<int64_t>(info.sample_bytes(), 1));
  }
  ~Producer() {
    auto lock = h5::lock();
    x_ = h5::Dataset();
    file_ = h5::File();
  }

  // Starts over on `order` (this rank's remaining indices of `epoch`); keeps the file and buffers.
  void reset(std::vector<int64_t> order, int64_t epoch) {
    order_ = std::move(order);
    epoch_ = epoch;
    next_ = block_begin_ = block_end_ = 0;
  }

  std::optional<Batch> produce() {
    if (next_ >= static_cast<int64_t>(order_.size())) return std::nullopt;
    int64_t count = std::min<int64_t>(options_.batch_size, static_cast<int64_t>(order_.size()) - next_);
    if (count < options_.batch_size && options_.drop_last_batch) return std::nullopt;
    if (next_ >= block_end_) load_block(next_);
    count = std::min(count, block_end_ - next_);  // blocks are whole batches, except the shard's last
    Batch b = assemble(next_, count);
    next_ += count;
    return b;
  }

  int64_t bytes_read() const { return bytes_read_.load(); }

 private:
  // Reads the distinct rows of order_[begin, begin + block_samples_) in file order; when
  // resident, all of /x once (kept for later epochs).
  void load_block(int64_t begin) {
    block_begin_ = begin;
    if (resident_) {
      block_end_ = static_cast<int64_t>(order_.size());
      if (static_cast<int64_t>(rows_.size()) == info_.size) return;
      rows_.resize(static_cast<size_t>(info_.size));
      std::iota(rows_.begin(), rows_.end(), int64_t{0});
    } else {
      block_end_ = std::min<int64_t>(begin + block_samples_, static_cast<int64_t>(order_.size()));
      rows_.assign(order_.begin() + block_begin_, order_.begin() + block_end_);
      std::sort(rows_.begin(), rows_.end());
      rows_.erase(std::unique(rows_.begin(), rows_.end()), rows_.end());
    }
    const int64_t row_bytes = info_.sample_bytes();
    const int64_t need = static_cast<int64_t>(rows_.size()) * row_bytes;
    if (need > data_.bytes()) data_ = RowBuffer(need);  // grows only
    const hid_t mem_type = h5::native_type(info_.x_dtype);
    const int64_t elements = info_.sample_elements();
    auto lock = h5::lock();
    for (size_t i = 0; i < rows_.size();) {
      // All wanted rows in this row's window (chunk), read as one hyperslab from the first to the last.
      const int64_t first = rows_[i], window_end = (first / window_rows_ + 1) * window_rows_;
      size_t j = i;
      while (j < rows_.size() && rows_[j] < window_end) ++j;
      const int64_t last = rows_[j - 1], span = last - first + 1;
      uint8_t* dst = data_.get() + i * row_bytes;
      if (span == static_cast<int64_t>(j - i)) {  // contiguous: straight into place
        x_.read_rows_raw(mem_type, dst, static_cast<size_t>(span * elements), first, span);
      } else {
        if (span * row_bytes > scratch_.bytes()) scratch_ = RowBuffer(span * row_bytes);
        x_.read_rows_raw(mem_type, scratch_.get(), static_cast<size_t>(span * elements), first, span);
        for (size_t k = i; k < j; ++k)
          std::memcpy(data_.get() + k * row_bytes, scratch_.get() + (rows_[k] - first) * row_bytes,
                      static_cast<size_t>(row_bytes));
      }
      bytes_read_ += span * row_bytes;
      i = j;
    }
  }

  const uint8_t* row(int64_t index) const {
    if (resident_) return data_.get() + index * info_.sample_bytes();
    const auto it = std::lower_bound(rows_.begin(), rows_.end(), index);
    return data_.get() + (it - rows_.begin()) * info_.sample_bytes();
  }

  // x_f32 = x_u8 * x_scale + x_shift (cpu::u8_to_f32); f32 data is copied as is.
  void normalise(const uint8_t* src, float* dst) const {
    const int64_t n = info_.sample_elements();
    if (info_.x_dtype == DType::u8) {
      cpu::u8_to_f32(src, dst, n, info_.x_scale, info_.x_shift);
    } else {
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    }
  }

  // Random crop from the zero-padded image and/or a horizontal flip, drawn from the counter
  // stream (seed, epoch, RngPurpose::augment) at the sample's index: independent of threads.
  // The padding is a raw 0: normalised, x_shift.
  template <typename T>
  void augment(const T* src, T* dst, int64_t index, T fill) const {
    const Shape& s = info_.sample_shape;
    const int64_t h = s[s.size() - 2], w = s[s.size() - 1], planes = s.numel() / (h * w);
    const RngStream stream =
        rng_stream(RngKey{epoch_seed(options_.seed, epoch_), 0, static_cast<uint32_t>(RngPurpose::augment)});
    const int64_t pad = options_.augment.crop_padding;
    int64_t dy = 0, dx = 0;
    if (pad > 0) {
      dy = static_cast<int64_t>(rng_uniform_at(stream, 3 * index) * (2 * pad + 1)) - pad;
      dx = static_cast<int64_t>(rng_uniform_at(stream, 3 * index + 1) * (2 * pad + 1)) - pad;
    }
    const bool flip = options_.augment.horizontal_flip && rng_uniform_at(stream, 3 * index + 2) < 0.5f;
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          const int64_t sy = y + dy, sx = (flip ? w - 1 - x : x) + dx;
          dst[(p * h + y) * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w ? src[(p * h + sy) * w + sx] : fill;
        }
  }

  Batch assemble(int64_t begin, int64_t count) {
    Shape xs{count};
    for (int64_t d : info_.sample_shape) xs.push_back(d);
    Batch b;
    b.x = Tensor::empty(xs, raw_ ? DType::u8 : DType::f32);
    b.y = Tensor::empty(Shape{count}, DType::i64);
    b.indices.assign(order_.begin() + begin, order_.begin() + begin + count);
    int64_t* y = b.y.data<int64_t>();
    for (int64_t i = 0; i < count; ++i) y[i] = (*labels_)[static_cast<size_t>(b.indices[i])];
    if (raw_) {
      fill_raw(b.indices, b.x.data<uint8_t>());
    } else {
      fill_normalised(b.indices, b.x.data<float>());
    }
    return b;
  }

  // The samples' raw u8 rows (augmented), for the caller to normalise.
  void fill_raw(const std::vector<int64_t>& indices, uint8_t* x) const {
    const int64_t n = info_.sample_elements();
    for (size_t i = 0; i < indices.size(); ++i) {
      if (options_.augment.enabled()) {
        augment<uint8_t>(row(indices[i]), x + i * n, indices[i], 0);
      } else {
        std::memcpy(x + i * n, row(indices[i]), static_cast<size_t>(n));
      }
    }
  }

  void fill_normalised(const std::vector<int64_t>& indices, float* x) const {
    const int64_t n = info_.sample_elements();
    const float fill = info_.x_dtype == DType::u8 ? info_.x_shift : 0.0f;
    std::vector<float> normalised(options_.augment.enabled() ? static_cast<size_t>(n) : 0);
    for (size_t i = 0; i < indices.size(); ++i) {
      if (options_.augment.enabled()) {
        normalise(row(indices[i]), normalised.data());
        augment<float>(normalised.data(), x + i * n, indices[i], fill);
      } else {
        normalise(row(indices[i]), x + i * n);
      }
    }
  }

  const DatasetInfo& info_;
  const LoaderOptions& options_;
  std::shared_ptr<const std::vector<int64_t>> labels_;
  std::vector<int64_t> order_;  // this rank's remaining indices this epoch
  int64_t epoch_ = 0;
  int64_t block_samples_;
  bool resident_;  // all of /x fits under max_memory: read once, kept across epochs
  bool raw_;       // batches of raw u8 pixels (LoaderOptions::raw_u8)
  h5::File file_;
  h5::Dataset x_;
  int64_t window_rows_ = 1;
  int64_t next_ = 0, block_begin_ = 0, block_end_ = 0;
  std::vector<int64_t> rows_;  // the block's distinct dataset rows, sorted
  RowBuffer data_;             // their /x bytes, in the same order
  RowBuffer scratch_;          // a window's rows when not all are wanted
  std::atomic<int64_t> bytes_read_{0};
};

Loader::Loader(const std::string& path, int rank, int world, LoaderOptions options)
    : info_([&] {
        auto lock = h5::lock();
        return inspect_dataset(path, false);
      }()),
      options_(std::move(options)),
      sampler_(info_.size, options_.seed, 0, rank, world, options_.shuffle, options_.drop_last) {
  DTRAIN_CHECK(options_.batch_size > 0, "loader: batch size ", options_.batch_size, " must be positive");
  DTRAIN_CHECK(options_.prefetch_depth >= 0, "loader: prefetch depth ", options_.prefetch_depth, " is negative");
  DTRAIN_CHECK(options_.max_memory_bytes > 0, "loader: data.max_memory ", options_.max_memory_bytes,
               " must be positive");
  if (options_.augment.enabled())
    DTRAIN_CHECK(info_.sample_shape.size() == 2 || info_.sample_shape.size() == 3, path,
                 ": augmentation needs image samples [H, W] or [C, H, W], /x samples are ", info_.sample_shape.str());
  {
    auto lock = h5::lock();
    h5::File f = h5::File::open(path);
    labels_ = std::make_shared<const std::vector<int64_t>>(f.dataset("/y").read_all<int64_t>());
  }
  check_labels(*labels_, info_.num_classes, path);
  // Blocks are whole batches, at least one, at most max_memory_bytes of raw /x.
  const int64_t fit = options_.max_memory_bytes / std::max<int64_t>(info_.sample_bytes(), 1);
  block_samples_ = std::max<int64_t>(options_.batch_size, fit / options_.batch_size * options_.batch_size);
  resident_ = info_.size * info_.sample_bytes() <= options_.max_memory_bytes;
  producer_ = std::make_unique<Producer>(info_, options_, labels_, block_samples_, resident_);
  start(0);
}

Loader::~Loader() { stop(); }  // joins the thread before producer_ (and its HDF5 handles) goes

int64_t Loader::steps_per_epoch() const {
  const int64_t n = samples_per_epoch(), b = options_.batch_size;
  return options_.drop_last_batch ? n / b : (n + b - 1) / b;
}

int64_t Loader::bytes_read() const { return producer_->bytes_read(); }

void Loader::start(int64_t position) {
  stop();
  sampler_.restore({sampler_.epoch(), position});
  std::vector<int64_t> order(sampler_.indices().begin() + position, sampler_.indices().end());
  producer_->reset(std::move(order), sampler_.epoch());
  delivered_ = position;
  epoch_done_ = false;
  if (options_.prefetch_depth > 0) {
    stop_ = false;
    prefetch_thread_ = std::thread([this] { prefetch_loop(); });
  }
}

void Loader::stop() {
  if (prefetch_thread_.joinable()) {
    {
      std::lock_guard<std::mutex> guard(queue_mutex_);
      stop_ = true;
    }
    queue_changed_.notify_all();
    prefetch_thread_.join();
  }
  queue_.clear();
}

void Loader::prefetch_loop() {
  // No CUDA call here (batches stay in pageable host memory; data::BatchStager moves them on the
  // training thread), so the thread needs no device of its own.
  while (true) {
    Queued item;
    try {
      item.batch = producer_->produce();
    } catch (...) {
      item.error = std::current_exception();
    }
    const bool last = !item.batch;
    std::unique_lock<std::mutex> guard(queue_mutex_);
    queue_changed_.wait(guard, [&] { return stop_ || static_cast<int>(queue_.size()) < options_.prefetch_depth; });
    if (stop_) return;
    queue_.push_back(std::move(item));
    queue_changed_.notify_all();
    if (last) return;
  }
}

std::optional<Batch> Loader::next() {
  if (epoch_done_) return std::nullopt;
  const auto t0 = Clock::now();
  std::optional<Batch> b;
  if (options_.prefetch_depth == 0) {
    b = producer_->produce();
  } else {
    Queued item;
    {
      std::unique_lock<std::mutex> guard(queue_mutex_);
      queue_changed_.wait(guard, [&] { return !queue_.empty(); });
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    queue_changed_.notify_all();
    if (item.error) {
      epoch_done_ = true;
      std::rethrow_exception(item.error);
    }
    b = std::move(item.batch);
  }
  wait_s_ += seconds_since(t0);
  if (!b) {
    epoch_done_ = true;
    return std::nullopt;
  }
  delivered_ += b->size();
  return b;
}

void Loader::set_epoch(int64_t epoch) {
  stop();
  sampler_.set_epoch(epoch);
  start(0);
}

void Loader::restore(const SamplerState& state) {
  stop();
  sampler_.restore(state);
  start(state.position);
}

}  // namespace dtrain::data
