// ParamSync: signature agreement, parameter broadcast, bucketed gradient all-reduce overlapped
// with backward, averaging, accumulation, checksum checks and the watchdog.
#include "comm/param_sync.h"

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <utility>

#include "comm/host_staging.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/ops.h"

namespace dtrain {
namespace {

std::string format_bytes(int64_t bytes) {
  char buf[32];
  if (bytes >= (int64_t{1} << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
  else if (bytes >= 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%lld bytes", static_cast<long long>(bytes));
  return buf;
}

}  // namespace

ParamSync::ParamSync(Communicator& comm, ParameterArena& arena, ParamSyncOptions options)
    : comm_(comm),
      arena_(arena),
      options_(std::move(options)),
      watchdog_(options_.timeout_s, [this](const std::string& what, double waited, const std::string& error) {
        on_timeout(what, waited, error);
      }) {
  DTRAIN_CHECK(arena_.allocated(), "ParamSync: the parameter arena must be allocated (build the model first)");
  DTRAIN_CHECK(options_.bucket_bytes > 0 && options_.first_bucket_bytes > 0, "comm.bucket_bytes and ",
               "comm.first_bucket_bytes must be positive, got ", options_.bucket_bytes, " and ",
               options_.first_bucket_bytes);
  // Arena order (reverse registration): the gradients backward produces first fill bucket 0.
  const auto& params = arena_.parameters();
  bucket_of_.assign(params.size(), 0);
  int64_t cap = options_.first_bucket_bytes;
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    const Parameter& p = **it;
    const int64_t bytes = p.shape.numel() * static_cast<int64_t>(sizeof(float));
    if (buckets_.empty() || (!buckets_.back().params.empty() && (buckets_.back().numel * 4 + bytes > cap))) {
      if (!buckets_.empty()) cap = options_.bucket_bytes;
      buckets_.push_back(Bucket{p.offset, 0, {}});
    }
    buckets_.back().numel += p.shape.numel();
    buckets_.back().params.push_back(p.index);
    bucket_of_[p.index] = static_cast<int>(buckets_.size()) - 1;
  }
  for (size_t b = 0; b < buckets_.size(); ++b) bucket_names_.push_back(describe_bucket(b));
  DTRAIN_CHECK(options_.zero == 0 || options_.zero == 1, "comm.zero must be 0 or 1, got ", options_.zero);
  if (options_.zero == 1) {
    DTRAIN_CHECK(!options_.compress_bf16, "comm.zero=1 does not support comm.compress=bf16 (use one or the other)");
    DTRAIN_CHECK(arena_.device() == comm_.device(), "comm.zero=1 needs the parameters where the ", comm_.backend(),
                 " backend reduces (", comm_.device().str(), "), they are on ", arena_.device().str());
    for (const Bucket& bk : buckets_) {
      DTRAIN_CHECK(bk.numel <= INT_MAX, "comm.zero=1: a gradient bucket of ", bk.numel,
                   " elements exceeds MPI's int count; lower comm.bucket_mb");
      const auto [begin, end] = piece_of(bk.numel, comm_.rank(), comm_.size());
      if (end > begin) shard_.push_back({bk.begin + begin, end - begin});
    }
  }
  DTRAIN_CHECK(arena_.device() == comm_.device() || comm_.device().is_cpu(), "ParamSync: the ", comm_.backend(),
               " backend reduces on ", comm_.device().str(), ", the parameters are on ", arena_.device().str());
  if ((arena_.device() != comm_.device() || options_.stage_on_host) && !alone()) {
    DTRAIN_CHECK(options_.zero == 0, "comm.zero=1 with staged buckets");
    std::vector<int64_t> slot_bytes;  // f32 room even for bf16, which is widened in its slot
    for (const Bucket& bk : buckets_) slot_bytes.push_back(bk.numel * 4);
    staging_ = std::make_unique<HostStaging>(arena_.device(), slot_bytes);
  }
  arena_.set_grad_ready_hook([this](const Parameter& p) { on_grad_ready(p); });
  if (options_.zero == 1) arena_.set_value_needed_hook([this](const Parameter& p) { on_value_needed(p); });
}

ParamSync::~ParamSync() {
  for (const Work& w : gathers_) w.wait();  // errors were the watchdog's to report
  arena_.set_grad_ready_hook(nullptr);
  arena_.set_value_needed_hook(nullptr);
}

std::string ParamSync::describe_bucket(size_t b) const {
  const Bucket& bk = buckets_[b];
  const auto& params = arena_.parameters();
  return detail::concat(options_.zero == 1 ? "reduce-scatter" : "allreduce", " of gradient bucket ", b + 1, "/",
                        buckets_.size(), " (", format_bytes(bk.numel * 4), ", parameters '",
                        params[bk.params.front()]->name, "'..'", params[bk.params.back()]->name, "')");
}

void ParamSync::on_timeout(const std::string& what, double waited_s, const std::string& error) {
  if (error.empty())
    std::fprintf(stderr, "[rank %d] watchdog: %s not finished after %.1f s (comm.timeout = %g s); aborting the job\n",
                 comm_.rank(), what.c_str(), waited_s, options_.timeout_s);
  else
    std::fprintf(stderr, "[rank %d] watchdog: %s failed: %s; aborting the job\n", comm_.rank(), what.c_str(),
                 error.c_str());
  comm_.abort(1);
  std::_Exit(1);  // not reached
}

// ---- (1) signature -----------------------------------------------------------------------

std::vector<std::string> ParamSync::signature_lines() const {
  std::vector<std::string> lines = options_.signature;
  if (lines.empty())
    for (const Parameter* p : arena_.parameters()) lines.push_back(p->name + " f32 " + p->shape.str());
  return lines;
}

namespace {

// Broadcasts a string from `root` (length, then bytes) through tensors on the communicator's device.
std::string broadcast_string(Communicator& comm, Watchdog& dog, const std::string& text, int root, const char* what) {
  Tensor len = Tensor::from_vector(std::vector<int64_t>{static_cast<int64_t>(text.size())}, Shape{1}, comm.device());
  dog.wait(comm.broadcast(len, root), detail::concat("broadcast of the length of ", what));
  const int64_t n = len.to_vector<int64_t>()[0];
  std::vector<uint8_t> bytes(n);
  if (comm.rank() == root) std::memcpy(bytes.data(), text.data(), n);
  Tensor buf = Tensor::from_vector(bytes, Shape{n}, comm.device());
  dog.wait(comm.broadcast(buf, root), detail::concat("broadcast of ", what));
  const std::vector<uint8_t> out = buf.to_vector<uint8_t>();
  return std::string(out.begin(), out.end());
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

}  // namespace

void ParamSync::verify_signature() {
  if (alone()) return;
  const std::vector<std::string> mine = signature_lines();
  std::string text;
  for (const std::string& l : mine) text += l + "\n";
  const std::vector<std::string> root = split_lines(broadcast_string(comm_, watchdog_, text, 0, "the model signature"));
  int64_t diff = -1;
  for (size_t i = 0; i < std::max(mine.size(), root.size()); ++i)
    if (i >= mine.size() || i >= root.size() || mine[i] != root[i]) {
      diff = static_cast<int64_t>(i);
      break;
    }
  Tensor in = Tensor::from_vector(std::vector<int64_t>{diff}, Shape{1}, comm_.device());
  Tensor all = Tensor::zeros(Shape{comm_.size()}, DType::i64, comm_.device());
  wait(comm_.allgather(in, all), "allgather of the signature comparison");
  const std::vector<int64_t> diffs = all.to_vector<int64_t>();
  for (int r = 0; r < comm_.size(); ++r) {
    if (diffs[r] < 0) continue;
    const size_t i = static_cast<size_t>(diffs[r]);
    const std::string theirs = broadcast_string(
        comm_, watchdog_, i < mine.size() ? mine[i] : "(no entry: signature ends)", r, "a signature entry");
    const std::string ours = i < root.size() ? root[i] : "(no entry: signature ends)";
    fail("model signature differs between rank 0 and rank ", r, " at entry ", i, ": rank 0 has '", ours, "', rank ", r,
         " has '", theirs, "' (every rank must build the same model from the same config)");
  }
}

// ---- (2) broadcast -----------------------------------------------------------------------

void ParamSync::broadcast_parameters(std::span<const Tensor> extra) {
  wait_parameters();
  if (alone()) return;
  auto bcast = [&](const Tensor& t, const std::string& what) {
    if (t.device() == comm_.device()) {
      wait(comm_.broadcast(t, 0), what);
    } else {
      Tensor staged = t.to(comm_.device());
      wait(comm_.broadcast(staged, 0), what);
      const_cast<Tensor&>(t).copy_from(staged);
    }
  };
  bcast(arena_.values(), detail::concat("broadcast of the parameters (", format_bytes(arena_.values().nbytes()), ")"));
  for (size_t i = 0; i < extra.size(); ++i)
    bcast(extra[i],
          detail::concat("broadcast of optimizer state tensor ", i, " (", format_bytes(extra[i].nbytes()), ")"));
}

// ---- (3)-(5) buckets, averaging, accumulation -------------------------------------------

void ParamSync::begin_backward(bool sync, int64_t samples) {
  DTRAIN_CHECK(!in_backward_, "ParamSync: begin_backward called twice without finish_backward");
  DTRAIN_CHECK(samples >= 0, "ParamSync: negative sample count ", samples);
  if (micro_steps_ == 0) {
    samples_mode_ = samples > 0;
    samples_unit_ = 0;
    local_samples_ = 0;
  } else {
    DTRAIN_CHECK((samples > 0) == samples_mode_, "ParamSync: give the sample count on every micro-step or on none");
  }
  DTRAIN_CHECK(samples_mode_ || !options_.summed_gradients,
               "ParamSync: summed_gradients needs the micro-batch's sample count in begin_backward");
  if (samples_mode_ && options_.summed_gradients) {
    local_samples_ += samples;
  } else if (samples_mode_) {
    // Keep the arena in units of the current micro-batch: grads = sum_k n_k g_k / n_current.
    if (samples_unit_ != 0 && samples_unit_ != samples)
      ops::scale(arena_.grads(), static_cast<float>(samples_unit_) / static_cast<float>(samples));
    samples_unit_ = samples;
    local_samples_ += samples;
  }
  ++micro_steps_;
  in_backward_ = true;
  sync_ = sync;
  if (!sync) return;
  pending_.assign(buckets_.size(), 0);
  for (size_t b = 0; b < buckets_.size(); ++b) pending_[b] = static_cast<int>(buckets_[b].params.size());
  marked_.assign(arena_.parameters().size(), 0);
  next_launch_ = 0;
  next_issue_ = 0;
  in_flight_.assign(buckets_.size(), InFlight{});
  stats_ = SyncStats{};
  stats_.gather_s = std::exchange(gather_s_, 0.0);  // this step's forward's (the trainer's order)
  stats_.gather_wait_s = std::exchange(gather_wait_s_, 0.0);
  stats_unread_ = false;
  if (samples_mode_ && !alone()) {
    sample_count_ = Tensor::from_vector(std::vector<int64_t>{local_samples_}, Shape{1}, comm_.device());
    sample_work_ = comm_.allreduce(sample_count_, ReduceOp::sum);
    watchdog_.watch(sample_work_, "allreduce of the global sample count");
  }
}

void ParamSync::on_grad_ready(const Parameter& p) {
  if (!gathers_.empty()) check_forward_waited();
  if (!in_backward_ || !sync_ || alone()) return;  // non-final micro-steps only accumulate
  DTRAIN_CHECK(!marked_[p.index], "ParamSync: parameter '", p.name, "' reported ready twice in one backward pass");
  marked_[p.index] = 1;
  if (--pending_[bucket_of_[p.index]] == 0) launch_ready_buckets();
}

void ParamSync::launch_ready_buckets() {
  // Strictly in bucket order, so every rank issues the same sequence of collectives.
  while (next_launch_ < buckets_.size() && pending_[next_launch_] == 0) launch(next_launch_++);
}

void ParamSync::launch(size_t b, bool at_once) {
  const Bucket& bk = buckets_[b];
  Tensor grads = arena_.grads().flat_range(bk.begin, bk.numel);
  if (samples_mode_ && !options_.summed_gradients && samples_unit_ != 1 && bk.numel > 0)
    ops::scale(grads, static_cast<float>(samples_unit_));
  Tensor wire = grads;
  if (options_.compress_bf16 && bk.numel > 0) wire = ops::to_dtype(grads, DType::bf16);
  InFlight& f = in_flight_[b];
  if (wire.raw_data() != grads.raw_data() || wire.numel() == 0) f.wire = wire;
  if (staging_) {
    f.host = staging_->stage_out(b, wire);
    issue_staged(false);
    return;
  }
  issue(b, wire, at_once || b + 1 == buckets_.size());
}

void ParamSync::issue(size_t b, const Tensor& wire, bool at_once) {
  // The last bucket holds the first layers' gradients, so backward is over when it is ready, and
  // finish_backward waits for whatever launches from there on at once: the mpi backend then runs
  // those on the waiting thread instead of handing them to its progress thread and back.
  struct AtOnce {  // reset even when the collective throws
    Communicator& comm;
    bool on;
    ~AtOnce() {
      if (on) comm.set_wait_at_once(false);
    }
  } guard{comm_, at_once};
  if (guard.on) comm_.set_wait_at_once(true);
  InFlight& f = in_flight_[b];
  f.work = options_.zero == 1 ? comm_.reduce_scatter(wire, ReduceOp::sum) : comm_.allreduce(wire, ReduceOp::sum);
  watchdog_.watch(f.work, bucket_name(b));
}

void ParamSync::issue_staged(bool block) {
  // In bucket order, so every rank issues the same sequence; each once its copy is on the host, so
  // the transport's time (comm_s) starts with its input there, never with backward's compute.
  while (next_issue_ < next_launch_) {
    const size_t b = next_issue_;
    if (!block && !staging_->copied(b)) return;
    staging_->wait_copied(b);
    in_flight_[b].wire = Tensor{};  // copied: a bf16 wire on the device is no longer read
    issue(b, in_flight_[b].host, b + 1 == buckets_.size());
    ++next_issue_;
  }
}

void ParamSync::finish_backward() {
  DTRAIN_CHECK(in_backward_, "ParamSync: finish_backward without begin_backward");
  in_backward_ = false;
  if (!sync_) return;
  if (alone()) return finish_alone();
  stats_.buckets_during_backward = static_cast<int>(next_launch_);
  while (next_launch_ < buckets_.size()) launch(next_launch_++, true);
  if (staging_) {
    const auto begin = Clock::now();
    issue_staged(true);
    stats_.exposed_s += seconds_since(begin);
  }
  double scale = 1.0 / (static_cast<double>(comm_.size()) * micro_steps_);
  if (samples_mode_) {
    stats_.exposed_s += watchdog_.wait_on_device(sample_work_, "allreduce of the global sample count");
    sample_scale_unread_ = true;
    // defer_average leaves reading the count to grad_scale(), after the host has waited anyway.
    scale = options_.defer_average ? 0.0 : global_sample_scale();
  }
  for (size_t b = 0; b < buckets_.size(); ++b) finish_bucket(b, scale);
  grad_scale_ = options_.defer_average ? static_cast<float>(scale) : 1.0f;
  grad_scale_unread_ = options_.defer_average && samples_mode_;
  stats_unread_ = true;
  micro_steps_ = 0;
}

void ParamSync::finish_bucket(size_t b, double scale) {
  InFlight& f = in_flight_[b];
  // A Work on the device (nccl) makes the compute stream wait; one on the host is waited for here.
  stats_.exposed_s += watchdog_.wait_on_device(f.work, bucket_name(b));
  if (buckets_[b].numel == 0) return;
  Tensor grads = arena_.grads().flat_range(buckets_[b].begin, buckets_[b].numel);
  if (staging_) {
    staging_->stage_in(b, grads, options_.compress_bf16 ? DType::bf16 : DType::f32);
  } else if (f.wire.defined()) {
    Tensor back = f.wire;
    if (back.dtype() != DType::f32) back = ops::to_dtype(back, DType::f32);
    if (grads.device().is_cuda()) {  // 0 + x on the compute stream: copy_from would wait on the host
      grads.fill(0.0f);
      ops::axpy(1.0f, back, grads);
    } else {
      grads.copy_from(back);
    }
  }
  if (scale != 1.0 && !options_.defer_average) {
    if (options_.zero == 1) {  // only this rank's piece holds a reduced gradient
      const auto [begin, end] = piece_of(buckets_[b].numel, comm_.rank(), comm_.size());
      grads = grads.flat_range(begin, end - begin);
    }
    ops::scale(grads, static_cast<float>(scale));
  }
}

void ParamSync::finish_alone() {
  // The arena holds this rank's sum already: only the average is left (as finish_backward's).
  double scale = 1.0 / micro_steps_;
  if (samples_mode_) {
    DTRAIN_CHECK(local_samples_ > 0, "ParamSync: no samples on any rank in this step");
    if (!options_.summed_gradients && samples_unit_ != 1) ops::scale(arena_.grads(), static_cast<float>(samples_unit_));
    scale = 1.0 / static_cast<double>(local_samples_);
  }
  if (scale != 1.0 && !options_.defer_average) ops::scale(arena_.grads(), static_cast<float>(scale));
  grad_scale_ = options_.defer_average ? static_cast<float>(scale) : 1.0f;
  grad_scale_unread_ = false;
  micro_steps_ = 0;
}

double ParamSync::global_sample_scale() {
  if (sample_scale_unread_) {
    const int64_t global = sample_count_.to_vector<int64_t>()[0];
    DTRAIN_CHECK(global > 0, "ParamSync: no samples on any rank in this step");
    sample_scale_ = 1.0 / static_cast<double>(global);
    sample_scale_unread_ = false;
  }
  return sample_scale_;
}

float ParamSync::grad_scale() {
  if (grad_scale_unread_) {
    grad_scale_ = static_cast<float>(global_sample_scale());
    grad_scale_unread_ = false;
  }
  return grad_scale_;
}

const SyncStats& ParamSync::last_stats() {
  if (!stats_unread_) return stats_;
  stats_unread_ = false;
  for (size_t b = 0; b < in_flight_.size(); ++b) {
    const Work& w = in_flight_[b].work;
    watchdog_.wait(w, bucket_name(b));  // done by now where the host has waited for the device since
    stats_.comm_s += w.duration_s();
    const auto [begin, end] = w.interval();
    stats_.collectives.push_back({bucket_name(b), begin, end});
  }
  return stats_;
}

// ---- ZeRO-1 ------------------------------------------------------------------------------

double ParamSync::gradient_sum_squares() {
  if (options_.zero == 0 || alone()) return ops::sum_squares(arena_.grads());
  double local = 0;
  for (const auto& [offset, count] : shard_) local += ops::sum_squares(arena_.grads().flat_range(offset, count));
  // f64 has no all-reduce here: the sum travels as two f32 (high part and remainder).
  const float high = static_cast<float>(local);
  Tensor both =
      Tensor::from_vector(std::vector<float>{high, static_cast<float>(local - high)}, Shape{2}, comm_.device());
  wait(comm_.allreduce(both, ReduceOp::sum), "allreduce of the gradient norm (comm.zero=1)");
  const std::vector<float> sums = both.to_vector<float>();
  return static_cast<double>(sums[0]) + static_cast<double>(sums[1]);
}

void ParamSync::gather_parameters() {
  if (options_.zero == 0 || alone()) return;
  wait_parameters();  // (none in flight unless a step ran no forward)
  gathers_.assign(buckets_.size(), Work());
  for (size_t b = buckets_.size(); b-- > 0;) {
    if (buckets_[b].numel == 0) continue;
    gathers_[b] = comm_.allgather_pieces(arena_.values().flat_range(buckets_[b].begin, buckets_[b].numel));
    watchdog_.watch(gathers_[b], gather_name(b), gathers_[b].on_device());
  }
}

void ParamSync::wait_parameters() {
  for (size_t b = 0; b < gathers_.size(); ++b) wait_gather(b);
}

// At backward's first gradient (before any bucket launches): the forward must have waited for every
// parameter all-gather, or it may have read values still arriving.
void ParamSync::check_forward_waited() {
  for (size_t b = 0; b < gathers_.size(); ++b)
    DTRAIN_CHECK(!gathers_[b].valid(), "ParamSync (comm.zero=1): the forward never asked for the parameters of ",
                 gather_name(b),
                 " (ParameterArena::value_needed), so it may have read them while they were "
                 "still arriving");
  gathers_.clear();
}

int ParamSync::gathers_in_flight() const {
  int n = 0;
  for (const Work& w : gathers_) n += w.valid() ? 1 : 0;
  return n;
}

void ParamSync::on_value_needed(const Parameter& p) {
  if (!gathers_.empty()) gather_wait_s_ += wait_gather(static_cast<size_t>(bucket_of_[p.index]));
}

// Waits for bucket b's parameter all-gather if it is in flight (on a GPU the compute stream waits,
// not the host); returns the seconds the host waited.
double ParamSync::wait_gather(size_t b) {
  if (b >= gathers_.size() || !gathers_[b].valid()) return 0;
  const double waited = watchdog_.wait_on_device(gathers_[b], gather_name(b));
  if (gathers_[b].is_done()) gather_s_ += gathers_[b].duration_s();  // (on a GPU: known later, not counted)
  gathers_[b] = Work();
  return waited;
}

std::string ParamSync::gather_name(size_t b) const {
  return "allgather of parameter bucket " + std::to_string(b + 1) + " (comm.zero=1)";
}

void ParamSync::gather_shards(const Tensor& packed, Tensor* full) {
  DTRAIN_CHECK(!full || full->numel() == arena_.numel(), "gather_shards: the full tensor has ", full->numel(),
               " elements, the arena ", arena_.numel());
  int64_t shard_total = 0;
  for (const auto& [offset, count] : shard_) shard_total += count;
  DTRAIN_CHECK(shard_total == packed.numel(), "gather_shards: the packed tensor has ", packed.numel(),
               " elements, this rank's shard ", shard_total);
  int64_t at = 0;  // in `packed`: this rank's pieces follow bucket order, one per non-empty piece
  for (const Bucket& bk : buckets_) {
    if (bk.numel == 0) continue;
    Tensor one =
        full ? full->flat_range(bk.begin, bk.numel) : Tensor::zeros(Shape{bk.numel}, DType::f32, packed.device());
    const auto [begin, end] = piece_of(bk.numel, comm_.rank(), comm_.size());
    if (end > begin) one.flat_range(begin, end - begin).copy_from(packed.flat_range(at, end - begin));
    at += end - begin;
    if (!alone()) wait(comm_.allgather_pieces(one), "allgather of an optimizer state shard (comm.zero=1)");
  }
}

// ---- (6) divergence check ----------------------------------------------------------------

void ParamSync::after_step(int64_t step) {
  if (options_.check_every_steps > 0 && step > 0 && step % options_.check_every_steps == 0) check_parameters(step);
}

void ParamSync::check_parameters(int64_t step) {
  if (alone()) return;  // nothing to diverge from
  wait_parameters();
  const auto& params = arena_.parameters();
  const std::vector<float> values = arena_.values().to_vector<float>();
  // Per parameter: a 64-bit hash of its bytes and its sum (for the message).
  struct Entry {
    uint64_t hash;
    double sum;
  };
  std::vector<Entry> mine(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const float* p = values.data() + params[i]->offset;
    const int64_t n = params[i]->shape.numel();
    mine[i].hash = fnv1a64(p, n * sizeof(float));
    double s = 0;
    for (int64_t k = 0; k < n; ++k) s += p[k];
    mine[i].sum = s;
  }
  const int64_t bytes = static_cast<int64_t>(mine.size() * sizeof(Entry));
  std::vector<uint8_t> packed(bytes);
  if (bytes) std::memcpy(packed.data(), mine.data(), bytes);
  Tensor in = Tensor::from_vector(packed, Shape{bytes}, comm_.device());
  Tensor all = Tensor::zeros(Shape{bytes * comm_.size()}, DType::u8, comm_.device());
  wait(comm_.allgather(in, all), "allgather of the parameter checksums");
  const std::vector<uint8_t> gathered = all.to_vector<uint8_t>();
  for (size_t i = 0; i < params.size(); ++i) {
    Entry root{};
    std::memcpy(&root, gathered.data() + i * sizeof(Entry), sizeof(Entry));
    for (int r = 1; r < comm_.size(); ++r) {
      Entry e{};
      std::memcpy(&e, gathered.data() + r * bytes + i * sizeof(Entry), sizeof(Entry));
      if (e.hash != root.hash)
        fail("parameters diverged across ranks at step ", step, ": '", params[i]->name,
             "' differs between rank 0 (sum ", root.sum, ") and rank ", r, " (sum ", e.sum,
             "); every rank must see identical averaged gradients (check data sharding, seeds and "
             "non-deterministic kernels)");
    }
  }
}

}  // namespace dtrain
