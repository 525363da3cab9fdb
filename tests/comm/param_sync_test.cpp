// ParamSync on 2 and 4 ranks: buckets, broadcast, signature agreement, the equivalence of data
// parallel training with one rank on the same samples (with and without accumulation, uneven
// batches, bf16 wire, buckets staged through host slots), and the divergence check. And, with
// test communicators in each process: a world of one issues no collective, and comm_s leaves out
// the wait for a bucket's input.
#include "comm/param_sync.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/clock.h"
#include "tests/comm/forwarding_communicator.h"
#include "tests/comm/mpi_comm.h"
#include "tests/comm/tiny_mlp.h"

namespace dtrain {
namespace {

using testing::TinyMlp;

using testing::comm;

constexpr int64_t kGlobalBatch = 64;
constexpr int kSteps = 20;
constexpr float kLr = 0.05f;

// One rank, batch 64: the reference every data-parallel run must match.
std::vector<float> reference_parameters() {
  TinyMlp m(100);  // rank 0's initialisation in data_parallel_parameters
  for (int s = 0; s < kSteps; ++s) {
    m.forward_backward(s, 0, kGlobalBatch);
    m.sgd(kLr);
  }
  return m.arena.values().to_vector<float>();
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rel * std::max(1.0, std::abs(static_cast<double>(want[i])))) << "element " << i;
}

// Shards each global batch of 64 over the ranks by `sizes` and trains with ParamSync.
// micro: how many micro-batches each local batch is split into; with_samples: pass counts.
// Small buckets so the tiny model spans several (sizes not multiples of the parameters).
ParamSyncOptions small_buckets() { return {.bucket_bytes = 700, .first_bucket_bytes = 64}; }

std::vector<float> data_parallel_parameters(const std::vector<int64_t>& sizes, int micro, bool with_samples,
                                            ParamSyncOptions options = small_buckets()) {
  const int r = comm().rank();
  TinyMlp m(100 + r);  // different init per rank: broadcast_parameters must fix it
  options.check_every_steps = 5;
  ParamSync sync(comm(), m.arena, options);
  sync.verify_signature();
  sync.broadcast_parameters();
  int64_t first = 0;
  for (int q = 0; q < r; ++q) first += sizes[q];
  const int64_t local = sizes[r];
  for (int s = 0; s < kSteps; ++s) {
    int64_t done = 0;
    for (int k = 0; k < micro; ++k) {
      // Without sample counts micro-batches must be equal; with them, make them uneven on purpose.
      const int64_t n = k + 1 < micro ? local / micro + (with_samples && k == 0 ? 1 : 0) : local - done;
      sync.begin_backward(k + 1 == micro, with_samples ? n : 0);
      m.forward_backward(s, first + done, n, options.summed_gradients);
      sync.finish_backward();
      done += n;
    }
    m.sgd(kLr, sync.grad_scale());
    sync.after_step(s + 1);
  }
  return m.arena.values().to_vector<float>();
}

std::vector<int64_t> even_sizes() { return std::vector<int64_t>(comm().size(), kGlobalBatch / comm().size()); }

std::vector<int64_t> uneven_sizes() {
  std::vector<int64_t> sizes(comm().size());
  int64_t left = kGlobalBatch;
  for (int q = 0; q + 1 < comm().size(); ++q) left -= (sizes[q] = 8 + 7 * q);
  sizes.back() = left;
  return sizes;
}

TEST(ParamSync, BucketsCoverTheArenaInReverseRegistrationOrder) {
  TinyMlp m(1);
  ParamSync sync(comm(), m.arena, {.bucket_bytes = 500, .first_bucket_bytes = 64});
  const auto& b = sync.buckets();
  ASSERT_GE(b.size(), 3u);
  EXPECT_EQ(b.front().params.front(), 3);  // "2.bias", registered last, is produced first
  EXPECT_EQ(b.front().params.size(), 1u);  // 20 bytes + 480 bytes > 64: the first bucket stays small
  int64_t next = 0;
  for (const Bucket& bk : b) {
    EXPECT_EQ(bk.begin, next);
    next += bk.numel;
  }
  EXPECT_EQ(next, m.arena.numel());
}

TEST(ParamSync, BroadcastGivesEveryRankRankZerosParametersAndState) {
  TinyMlp m(7 + comm().rank());
  Tensor momentum = Tensor::full(Shape{5}, static_cast<float>(comm().rank()));
  ParamSync sync(comm(), m.arena);
  sync.broadcast_parameters(std::span<const Tensor>(&momentum, 1));
  expect_close(m.arena.values().to_vector<float>(), TinyMlp(7).arena.values().to_vector<float>(), 0);
  for (float v : momentum.to_vector<float>()) EXPECT_EQ(v, 0.0f);
}

TEST(ParamSync, MatchesOneRankWithTheGlobalBatch) {
  expect_close(data_parallel_parameters(even_sizes(), 1, false), reference_parameters(), 1e-5);
}

TEST(ParamSync, MatchesOneRankWithGradientAccumulation) {
  expect_close(data_parallel_parameters(even_sizes(), 2, false), reference_parameters(), 1e-5);
}

TEST(ParamSync, AveragesAcrossRanksWithUnevenBatches) {
  expect_close(data_parallel_parameters(uneven_sizes(), 1, true), reference_parameters(), 1e-5);
  expect_close(data_parallel_parameters(uneven_sizes(), 3, true), reference_parameters(), 1e-5);
}

// The trainer's mode: summed per-sample gradients, no pass before the all-reduce, and the average
// left to the update (grad_scale()).
TEST(ParamSync, SummedGradientsWithTheAverageLeftToTheOptimizer) {
  ParamSyncOptions o = small_buckets();
  o.defer_average = true;
  o.summed_gradients = true;
  expect_close(data_parallel_parameters(uneven_sizes(), 1, true, o), reference_parameters(), 1e-5);
  expect_close(data_parallel_parameters(uneven_sizes(), 3, true, o), reference_parameters(), 1e-5);
  expect_close(data_parallel_parameters(even_sizes(), 2, true, o), reference_parameters(), 1e-5);
}

TEST(ParamSync, DeferredAverageIsTheSameFloatAsTheScaledArena) {
  // Sums times grad_scale() must give exactly the bits finish_backward's own scaling gives.
  TinyMlp a(3), b(3);
  ParamSync plain(comm(), a.arena);
  ParamSyncOptions o;
  o.defer_average = true;
  ParamSync deferred(comm(), b.arena, o);
  for (auto [m, sync] : {std::pair{&a, &plain}, std::pair{&b, &deferred}}) {
    sync->begin_backward(true, 0);
    m->forward_backward(0, comm().rank() * 8, 8);
    sync->finish_backward();
  }
  EXPECT_EQ(plain.grad_scale(), 1.0f);
  EXPECT_EQ(deferred.grad_scale(), 1.0f / static_cast<float>(comm().size()));
  const std::vector<float> want = a.arena.grads().to_vector<float>(), sums = b.arena.grads().to_vector<float>();
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(sums[i] * deferred.grad_scale(), want[i]) << "element " << i;
}

TEST(ParamSync, SummedGradientsNeedSampleCounts) {
  TinyMlp m(1);
  ParamSyncOptions o;
  o.summed_gradients = true;
  ParamSync sync(comm(), m.arena, o);
  EXPECT_THROW(sync.begin_backward(true, 0), Error);
}

TEST(ParamSync, DefaultBucketSizesGiveTheSameResult) {
  expect_close(data_parallel_parameters(even_sizes(), 1, false, ParamSyncOptions{}), reference_parameters(), 1e-5);
}

TEST(ParamSync, Bf16CompressionStaysClose) {
  ParamSyncOptions o = small_buckets();
  o.compress_bf16 = true;
  expect_close(data_parallel_parameters(even_sizes(), 1, false, o), reference_parameters(), 2e-2);
}

// The path of a GPU arena with the mpi backend (each bucket through its host slot, issued in order
// once there, copied back into the arena), here on the CPU.
TEST(ParamSync, StagedBucketsMatchOneRank) {
  ParamSyncOptions o = small_buckets();
  o.stage_on_host = true;
  expect_close(data_parallel_parameters(even_sizes(), 1, false, o), reference_parameters(), 1e-5);
  expect_close(data_parallel_parameters(uneven_sizes(), 3, true, o), reference_parameters(), 1e-5);
  o.defer_average = true;
  o.summed_gradients = true;
  expect_close(data_parallel_parameters(uneven_sizes(), 2, true, o), reference_parameters(), 1e-5);
}

TEST(ParamSync, StagedBf16StaysClose) {
  ParamSyncOptions o = small_buckets();
  o.stage_on_host = true;
  o.compress_bf16 = true;
  expect_close(data_parallel_parameters(even_sizes(), 1, false, o), reference_parameters(), 2e-2);
}

TEST(ParamSync, LaunchesBucketsDuringBackward) {
  TinyMlp m(1);
  ParamSync sync(comm(), m.arena, {.bucket_bytes = 500, .first_bucket_bytes = 64});
  sync.begin_backward();
  m.forward_backward(0, comm().rank() * 8, 8);
  sync.finish_backward();
  EXPECT_EQ(sync.last_stats().buckets_during_backward, static_cast<int>(sync.buckets().size()));
  // Non-final micro-steps do not communicate: the local gradient stays local.
  m.arena.zero_grad();
  sync.begin_backward(false);
  m.forward_backward(0, comm().rank() * 8, 8);
  sync.finish_backward();
  TinyMlp alone(1);
  alone.forward_backward(0, comm().rank() * 8, 8);
  expect_close(m.arena.grads().to_vector<float>(), alone.arena.grads().to_vector<float>(), 0);
}

TEST(ParamSync, AgreeingSignaturesPass) {
  TinyMlp m(1);
  ParamSync sync(comm(), m.arena, {.signature = {"config type=tiny", "0.weight f32 [24, 12]"}});
  EXPECT_NO_THROW(sync.verify_signature());
}

TEST(ParamSync, EveryRankNamesTheFirstSignatureDifference) {
  if (comm().size() < 2) GTEST_SKIP() << "needs 2 ranks";
  TinyMlp m(1);
  std::vector<std::string> sig = {"config type=tiny", "0.weight f32 [24, 12]", "0.bias f32 [24]"};
  if (comm().rank() == comm().size() - 1) sig[2] = "0.bias f32 [25]";
  ParamSync sync(comm(), m.arena, {.signature = sig});
  try {
    sync.verify_signature();
    FAIL() << "expected a signature mismatch";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("rank " + std::to_string(comm().size() - 1)), std::string::npos) << msg;
    EXPECT_NE(msg.find("entry 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'0.bias f32 [24]'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'0.bias f32 [25]'"), std::string::npos) << msg;
  }
}

TEST(ParamSync, DetectsDivergedParametersOnEveryRank) {
  if (comm().size() < 2) GTEST_SKIP() << "needs 2 ranks";
  TinyMlp m(1);
  ParamSync sync(comm(), m.arena, {.check_every_steps = 10});
  EXPECT_NO_THROW(sync.after_step(10));
  if (comm().rank() == 1) m.b1->value.data<float>()[3] += 1e-6f;
  try {
    sync.after_step(20);
    FAIL() << "expected a divergence error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'0.bias'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("step 20"), std::string::npos) << msg;
  }
}

// ---- in each process, with test communicators ------------------------------------------

// A world of one: no signature exchange, broadcast, sample count, all-reduce, checksum or
// fingerprint (a fingerprint goes with a collective): ParamSync only averages.
TEST(ParamSyncAlone, AWorldOfOneIssuesNoCollectives) {
  for (const auto& [defer, zero] : {std::pair{false, 0}, std::pair{true, 0}, std::pair{true, 1}}) {
    SCOPED_TRACE(::testing::Message() << "defer_average " << defer << ", zero " << zero);
    testing::CountingCommunicator counting;
    TinyMlp m(5), alone(5);
    ParamSyncOptions o = small_buckets();
    o.check_every_steps = 1;
    o.defer_average = defer;
    o.summed_gradients = defer;
    o.zero = zero;
    ParamSync sync(counting, m.arena, o);
    sync.verify_signature();
    sync.broadcast_parameters();
    for (int s = 0; s < 3; ++s) {
      m.arena.zero_grad();
      alone.arena.zero_grad();
      for (int k = 0; k < 2; ++k) {  // two micro-batches of 6 and 10 samples
        const int64_t first = k * 6, n = k == 0 ? 6 : 10;
        sync.begin_backward(k == 1, n);
        m.forward_backward(s, first, n, defer);
        sync.finish_backward();
      }
      alone.forward_backward(s, 0, 16);  // the mean over the 16 samples
      const float scale = sync.grad_scale();
      EXPECT_EQ(scale, defer ? 1.0f / 16 : 1.0f);
      EXPECT_GT(sync.gradient_sum_squares(), 0.0);
      sync.gather_parameters();
      std::vector<float> got = m.arena.grads().to_vector<float>();
      for (float& g : got) g *= scale;
      expect_close(got, alone.arena.grads().to_vector<float>(), 1e-5);
      sync.after_step(s + 1);
      EXPECT_EQ(sync.last_stats().comm_s, 0.0);
    }
    EXPECT_EQ(counting.collectives(), 0) << "the last was " << counting.last();
  }
}

// A world of two (on rank 0) whose all-reduces get their input `late_s` after they are issued, as
// a bucket still on its way to the host, and then take `transport_s`; the reduction changes
// nothing. Its thread runs them one at a time, in order.
class LateInputCommunicator final : public Communicator {
 public:
  LateInputCommunicator(double late_s, double transport_s)
      : late_(late_s), transport_(transport_s), thread_([this] { run(); }) {}
  ~LateInputCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  std::string backend() const override { return "late"; }
  int rank() const override { return 0; }
  int size() const override { return 2; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 2; }
  Device device() const override { return Device::cpu(); }
  Work allreduce(Tensor, ReduceOp) override {
    auto state = std::make_shared<WorkState>("allreduce with a late input");
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back({state, Clock::now() + std::chrono::duration_cast<Clock::duration>(late_)});
    }
    cv_.notify_all();
    return Work(state);
  }
  Work broadcast(Tensor, int) override { return Work::done("broadcast"); }
  Work allgather(Tensor, Tensor) override { return Work::done("allgather"); }
  Work reduce_scatter(Tensor, ReduceOp) override { return Work::done("reduce_scatter"); }
  Work allgather_pieces(Tensor) override { return Work::done("allgather_pieces"); }
  Work barrier() override { return Work::done("barrier"); }
  [[noreturn]] void abort(int code) noexcept override { std::_Exit(code); }

 private:
  struct Pending {
    std::shared_ptr<WorkState> state;
    Clock::time_point ready;
  };
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      const Pending p = queue_.front();
      queue_.pop_front();
      lock.unlock();
      std::this_thread::sleep_until(p.ready);
      p.state->mark_started();  // handed to the transport, input ready
      std::this_thread::sleep_for(transport_);
      p.state->complete();
      lock.lock();
    }
  }
  std::chrono::duration<double> late_, transport_;
  std::mutex mu_;  // guards queue_ and stop_
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stop_ = false;
  std::thread thread_;
};

TEST(ParamSyncAlone, CommTimeLeavesOutTheWaitForLateInputs) {
  constexpr double kLateS = 0.3, kTransportS = 0.002;
  LateInputCommunicator late(kLateS, kTransportS);
  TinyMlp m(1);
  ParamSync sync(late, m.arena, {.bucket_bytes = 500, .first_bucket_bytes = 64});
  ASSERT_GE(sync.buckets().size(), 3u);
  sync.begin_backward();
  m.forward_backward(0, 0, 8);
  sync.finish_backward();
  const SyncStats& stats = sync.last_stats();
  // The host waited for the late inputs; the transport's time is a few milliseconds a bucket.
  EXPECT_GE(stats.exposed_s, 0.8 * kLateS);
  EXPECT_LT(stats.comm_s, 0.5 * kLateS) << "comm_s counts the wait for the inputs";
  EXPECT_GE(stats.comm_s, kTransportS * static_cast<double>(sync.buckets().size()));
  ASSERT_EQ(stats.collectives.size(), sync.buckets().size());
  for (const SyncStats::Span& span : stats.collectives) EXPECT_LE(span.begin, span.end) << span.name;
}

}  // namespace
}  // namespace dtrain
