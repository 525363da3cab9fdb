#pragma once
// ParamSync: keeps the replicas of one model identical across ranks. It knows the parameter
// arena, its buckets and the grad_ready hook, never layers.
//
//   ParamSync sync(comm, model.arena(), {.signature = model.signature()});
//   sync.verify_signature();          // every rank fails with the first differing entry
//   sync.broadcast_parameters();      // rank 0's parameters (and optimizer state) everywhere
//   per step, per micro-step:
//     sync.begin_backward(/*sync=*/last_micro_step, samples_in_micro_batch);
//     model.backward(...);            // full buckets start their all-reduce during backward
//     sync.finish_backward();         // after the last micro-step: grads hold the global average
//   optimizer.step(); sync.after_step(step);  // every check_every_steps: parameter checksums
//
// Buckets are ranges of the gradient arena (reverse registration order, so the gradients
// backward produces first come first): the first holds up to first_bucket_bytes, the others up
// to bucket_bytes, always whole parameters. Averaging: with samples given, the sum over every
// rank's samples divided by the global sample count (exact for uneven batches); without, the
// sum divided by world size x micro-steps. The layers are assumed to produce the gradient of a
// per-micro-batch mean loss (or, with summed_gradients, of the sum over its samples). With
// defer_average the division is left to the optimizer (grad_scale()).
//
// Watchdog: a collective not done within timeout_s prints "[rank r] watchdog: <op, bucket> not
// finished after <s> s" and aborts the job.
//
// Devices. A communicator that reduces on the arena's GPU (nccl): finish_backward makes the compute
// stream wait for each bucket (Work::wait_on_device), the host does not; the watchdog still watches
// them. A communicator that reduces on the host (mpi) with the arena on a GPU: each bucket goes
// through a page-locked host slot (comm/host_staging.h): copied out on a copy stream once backward
// has produced it, reduced on the host once there, copied straight back into the arena (the compute
// stream waits for it). A world of one issues no collective at all: ParamSync only averages.
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/watchdog.h"
#include "core/arena.h"

namespace dtrain {

struct ParamSyncOptions {
  int64_t bucket_bytes = int64_t{25} << 20;
  int64_t first_bucket_bytes = int64_t{1} << 20;
  double timeout_s = 300.0;       // comm.timeout
  int64_t check_every_steps = 0;  // compare parameter checksums every N steps (0: never)
  bool compress_bf16 = false;     // comm.compress=bf16: gradients travel as bf16
  // finish_backward leaves the all-reduced sums in the arena, and grad_scale() is the factor that
  // makes them the average, for the optimizer to apply as it reads them: one pass fewer over the
  // gradients, which on a large model costs as much as the all-reduce's own overhead (the trainer
  // does this). false: finish_backward scales the arena itself and grad_scale() is 1.
  bool defer_average = false;
  // With sample counts given: the layers produce the gradient of the micro-batch's loss summed over
  // its samples (not averaged), so no bucket is scaled before its all-reduce.
  bool summed_gradients = false;
  // comm.zero = 1 (ZeRO-1): each bucket is reduce-scattered instead of all-reduced, so after
  // finish_backward this rank holds the reduced gradient of its shard only (shard(): its piece of
  // every bucket, piece_of); the optimizer updates that shard with its shard of the state, and
  // gather_parameters() all-gathers the updated values. The same bytes travel as with all-reduce.
  int zero = 0;
  // Lines every rank must agree on (e.g. Model::signature(): config + "name dtype shape" lines);
  // empty: the arena's names, dtypes and shapes.
  std::vector<std::string> signature = {};
  // Carry every bucket through host staging slots even where the arena is where the communicator
  // reduces: the path of a GPU arena with the mpi backend, on the CPU (tests). Automatic where the
  // arena is on a GPU and the communicator reduces on the host.
  bool stage_on_host = false;
};

struct Bucket {
  int64_t begin = 0;  // first element in the gradient arena
  int64_t numel = 0;
  std::vector<int> params;  // registration indices, in arena order
};

// Timings of the last synchronised step.
struct SyncStats {
  // Sum of the bucket all-reduce durations, each from its hand-off to the transport with its input
  // ready (mpi: the progress thread starting it; a staged bucket: once on the host; nccl: CUDA
  // events around it on the communicator's stream) to its end: never backward's compute.
  double comm_s = 0;
  double exposed_s = 0;  // time finish_backward waited for communication (host)
  // ZeRO-1: the parameter all-gathers' durations (host backends; as comm_s) and the part of them
  // the forward waited for (the rest overlapped it).
  double gather_s = 0, gather_wait_s = 0;
  int buckets_during_backward = 0;  // buckets launched by grad_ready before finish_backward
  struct Span {
    std::string name;  // "allreduce of bucket 2 (..)"
    std::chrono::steady_clock::time_point begin, end;
  };
  std::vector<Span> collectives;  // when each bucket's all-reduce ran (for traces)
};

class HostStaging;

class ParamSync {
 public:
  ParamSync(Communicator& comm, ParameterArena& arena, ParamSyncOptions options = {});
  ~ParamSync();  // waits for the parameter all-gathers, removes the arena hooks
  ParamSync(const ParamSync&) = delete;
  ParamSync& operator=(const ParamSync&) = delete;

  // Collective: compares the signature with rank 0's; throws on every rank naming the first difference.
  void verify_signature();
  // Collective: copies rank 0's parameters, then each `extra` tensor (optimizer state), to all ranks.
  void broadcast_parameters(std::span<const Tensor> extra = {});
  // Before each micro-step's backward. sync=false: accumulate only, no communication.
  // samples: this rank's samples in the micro-batch (0: assume equal batches everywhere).
  void begin_backward(bool sync = true, int64_t samples = 0);
  // After each micro-step's backward; on a sync step launches the buckets not yet launched,
  // waits for all and leaves the averaged gradients in the arena.
  void finish_backward();
  // After the optimizer step: every check_every_steps steps runs check_parameters(step).
  void after_step(int64_t step);
  // Collective: compares per-parameter checksums with rank 0's; throws on every rank naming the
  // first diverged parameter and the ranks.
  void check_parameters(int64_t step);

  const std::vector<Bucket>& buckets() const { return buckets_; }

  // ---- ZeRO-1 (options.zero = 1)
  // This rank's shard: its piece of each bucket, as (arena offset, count) in bucket order; empty
  // without ZeRO.
  const std::vector<ArenaSpan>& shard() const { return shard_; }
  // The sum of squares of the reduced gradients (before grad_scale()): of the whole arena without
  // ZeRO (no collective), or of every rank's shard (collective: one all-reduce) with it.
  double gradient_sum_squares();
  // Collective, after the optimizer updated this rank's shard: starts sending every rank's shard
  // of the parameter values to every rank (no-op without ZeRO), the last bucket (the first layers)
  // first, and returns. The next forward waits for each bucket when a layer first reads one of its
  // parameters (ParameterArena::value_needed, which Sequential calls), so the all-gathers overlap
  // the forward; backward's first gradient requires that the forward waited for all of them.
  void gather_parameters();
  // Waits for every all-gather gather_parameters() started: before anything but a training forward
  // reads the parameters (evaluation, a checkpoint, the end of training).
  void wait_parameters();
  // How many of those all-gathers no one has waited for yet.
  int gathers_in_flight() const;
  // Collective: `full` (arena-shaped, on the arena's device) receives every rank's shard of a
  // tensor that each rank holds packed (its shard's runs in order, as Optimizer::shard packs its
  // state), e.g. an optimizer slot for a checkpoint. Ranks that pass no `full` take part but keep
  // nothing, so they never hold more than one bucket of it.
  void gather_shards(const Tensor& packed, Tensor* full);
  // Reads the buckets' timings, which on a GPU are known once the device is past the collectives:
  // read after the optimizer step (the gradient norm has waited for them), it waits for nothing.
  const SyncStats& last_stats();
  // What the arena's gradients must be multiplied by to be the average after finish_backward: 1
  // unless defer_average. On a GPU communicator with sample counts it reads the global count from
  // the device (call it after gradient_sum_squares(), whose read has waited for it already).
  float grad_scale();
  Communicator& communicator() { return comm_; }

 private:
  void on_grad_ready(const Parameter& p);
  void on_value_needed(const Parameter& p);
  double wait_gather(size_t b);
  void check_forward_waited();
  std::string gather_name(size_t b) const;
  void launch_ready_buckets();
  void launch(size_t b, bool at_once = false);
  // Hands bucket b's wire buffer to the communicator and the watchdog.
  void issue(size_t b, const Tensor& wire, bool at_once);
  // Staged buckets: issues them in order once on the host; block: waits for each copy.
  void issue_staged(bool block);
  void finish_bucket(size_t b, double scale);
  // A world of one: the average, with no collective.
  void finish_alone();
  // 1 / the global sample count (read from the communicator's device once per step).
  double global_sample_scale();
  bool alone() const { return comm_.size() == 1; }
  [[noreturn]] void on_timeout(const std::string& what, double waited_s, const std::string& error);
  void wait(const Work& work, const std::string& what) { watchdog_.wait(work, what); }
  std::vector<std::string> signature_lines() const;
  std::string describe_bucket(size_t b) const;
  const std::string& bucket_name(size_t b) const { return bucket_names_[b]; }

  Communicator& comm_;
  ParameterArena& arena_;
  ParamSyncOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_;               // registration index -> bucket
  std::vector<std::string> bucket_names_;    // describe_bucket(b), built once (read on every step)
  std::vector<ArenaSpan> shard_;             // ZeRO-1: this rank's piece of each bucket
  std::vector<Work> gathers_;                // ZeRO-1: per bucket, the parameter all-gather in flight
  double gather_s_ = 0, gather_wait_s_ = 0;  // since the last step's stats: gathers waited for
  Watchdog watchdog_;

  // The step in progress.
  bool in_backward_ = false;
  bool sync_ = false;
  int micro_steps_ = 0;
  int64_t samples_unit_ = 0;   // arena grads = sum_k samples_k * grad_k / samples_unit_
  int64_t local_samples_ = 0;  // this rank's samples over the micro-steps
  bool samples_mode_ = false;
  float grad_scale_ = 1.0f;
  bool grad_scale_unread_ = false;  // grad_scale_ waits for global_sample_scale()
  Tensor sample_count_;             // i64 [1] on comm.device(), all-reduced on the sync step
  Work sample_work_;
  bool sample_scale_unread_ = false;
  double sample_scale_ = 1.0;
  std::vector<int> pending_;  // per bucket: parameters not yet ready
  std::vector<char> marked_;  // per parameter: grad_ready seen this pass
  size_t next_launch_ = 0;    // buckets launch strictly in order
  size_t next_issue_ = 0;     // staged: the next bucket to hand to the communicator
  struct InFlight {
    Work work;
    Tensor wire;  // the buffer on the wire when it is not the arena view (bf16), until on the wire
    Tensor host;  // staged: its host slot
  };
  std::vector<InFlight> in_flight_;
  std::unique_ptr<HostStaging> staging_;
  SyncStats stats_;
  bool stats_unread_ = false;  // last_stats() still has to read the works' timings
};

}  // namespace dtrain
