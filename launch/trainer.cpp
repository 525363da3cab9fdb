#include "launch/trainer.h"

#include <sched.h>
#include <sys/statvfs.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <optional>
#include <thread>

#include "comm/communicator.h"
#include "comm/environment.h"
#include "comm/param_sync.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/gpu.h"
#include "core/kernels.h"
#include "core/log.h"
#include "core/loss.h"
#include "core/model.h"
#include "core/ops.h"
#include "data/batch_stager.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/token_windows.h"
#include "launch/checkpoint.h"
#include "launch/collective_wait.h"
#include "launch/log_window.h"
#include "launch/metrics.h"
#include "launch/trace.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace dtrain {

// ---- stop requests ------------------------------------------------------------------------
// The one piece of process-wide mutable state besides the logger: a signal handler can only
// set a flag.
namespace {
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int signal) { g_stop_signal = signal; }
}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  // SIGUSR1 too: Open MPI's mpirun forwards it to every rank (SIGTERM to mpirun kills the ranks
  // after odls_base_sigkill_timeout), and Slurm sends it before the time limit with --signal.
  for (int signal : {SIGINT, SIGTERM, SIGUSR1}) sigaction(signal, &action, nullptr);
}
bool stop_requested() { return g_stop_signal != 0; }
void request_stop() { g_stop_signal = SIGTERM; }

// ---- setup --------------------------------------------------------------------------------

namespace {

Device choose_device(const std::string& text, const LaunchEnv& env) {
  const Device requested = Device::parse(text);
  if (requested.is_cpu()) return requested;
  const int count = gpu::device_count();
  if (count == 0) fail("train.device=", text, ": no CUDA GPU is visible (", gpu::no_device_reason(), ")");
  // "cuda": one GPU per rank on the node, by local rank (Horovod's and DDP's convention).
  const int index = text == "cuda" ? env.local_rank % count : requested.index;
  DTRAIN_CHECK(index < count, "train.device=", text, ": only ", count, " GPU(s) visible");
  return Device::cuda(index);
}

// The model's per-sample input shape from the data: the sample shape, with a channel dim added
// for a model of images when the samples are plain [H, W] images; for a model of tokens, its
// context. An explicit model.input_shape must hold the same number of elements.
Shape resolve_input_shape(const ModelConfig& model, const data::DatasetInfo& train) {
  if (model_input_layout(model.type) == InputLayout::tokens) return Shape{model.ctx};
  const Shape& sample = train.sample_shape;
  if (model.input_shape.empty()) {
    if (model_input_layout(model.type) == InputLayout::images && sample.size() == 2)
      return Shape{1, sample[0], sample[1]};
    return sample;
  }
  DTRAIN_CHECK(model.input_shape.numel() == sample.numel(), "config key model.input_shape: ", model.input_shape.str(),
               " holds ", model.input_shape.numel(), " elements but the samples of ", train.path, " are ", sample.str(),
               " (", sample.numel(), ")");
  return model.input_shape;
}

// A model of tokens trains on a token corpus, every other model on a classification file.
void check_data_kind(const ModelConfig& model, const std::string& key, const std::string& path, bool tokens) {
  const bool wants_tokens = model_input_layout(model.type) == InputLayout::tokens;
  if (wants_tokens && !tokens)
    fail("config key ", key, ": ", path, " is a classification file (/x, /y); model.type=", model.type,
         " trains on a token corpus (/tokens: dtrain data convert --from text)");
  if (!wants_tokens && tokens)
    fail("config key ", key, ": ", path, " is a token corpus (/tokens); model.type=", model.type,
         " trains on a classification file (/x, /y); a language model is model.type=gpt");
}

data::TokenWindowOptions token_window_options(const TrainConfig& c, bool training) {
  data::TokenWindowOptions o;
  o.ctx = c.model.ctx;
  o.batch_size = c.train.batch_size;
  o.seed = c.train.seed;
  o.random = training;
  o.max_windows = training ? 0 : c.data.eval_windows;
  return o;
}

data::LoaderOptions loader_options(const TrainConfig& c, Device device, bool training) {
  data::LoaderOptions o;
  o.batch_size = training ? c.train.batch_size : std::max<int64_t>(c.train.batch_size, 256);
  o.seed = c.train.seed;
  o.shuffle = training && c.data.shuffle;
  o.max_memory_bytes = c.data.max_memory_mb << 20;
  o.prefetch_depth = c.data.prefetch;
  if (training) o.augment = {c.data.augment_crop_padding, c.data.augment_flip};
  o.raw_u8 = device.is_cuda();  // normalised on the GPU: a quarter of the bytes to copy
  return o;
}

// CPU threads (OpenBLAS's and dtrain's own passes, core/cpu/parallel.h): the cores this rank may run on (its affinity
// mask, so a launcher's binding or a Slurm cpuset is respected) shared among the ranks on the node, unless configured.
void set_blas_threads_per_rank(int configured, int ranks_on_node) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  const int cores = sched_getaffinity(0, sizeof(mask), &mask) == 0
                        ? std::max(1, CPU_COUNT(&mask))
                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = configured > 0 ? configured : std::max(1, cores / std::max(1, ranks_on_node));
  cpu::set_blas_threads(threads);
  log_info("CPU threads per rank: {} ({} usable cores, {} ranks on this node), OpenBLAS {} kernels", threads, cores,
           ranks_on_node, cpu::blas_core_name());
}

}  // namespace

namespace {

// Logits and labels as rows of one prediction each: [B, classes] and [B]; a model of tokens
// predicts at every position: [B * T, vocab] and [B * T].
struct Predictions {
  Tensor logits, labels;
};
Predictions as_rows(const Tensor& logits, const Tensor& labels) {
  const int64_t classes = logits.shape().back(), rows = logits.numel() / classes;
  DTRAIN_CHECK(labels.numel() == rows, "the model predicts ", rows, " rows for labels of shape ", labels.shape().str());
  return {logits.view(Shape{rows, classes}), labels.view(Shape{rows})};
}

}  // namespace

struct Trainer::State {
  // Where this rank runs and how it talks to the others.
  struct Runtime {
    LaunchEnv env;
    Device device;
    std::unique_ptr<Communicator> comm;
  };
  struct Datasets {
    data::DatasetInfo train_info;
    bool tokens = false;  // token corpora: windows of model.ctx tokens, a prediction per token
    std::unique_ptr<data::BatchSource> train_loader;
    std::unique_ptr<data::BatchSource> test_loader;  // null without data.test
    std::unique_ptr<data::BatchStager> stager;       // cuda: batches to the GPU, the host not waiting
  };
  // The model and what trains it.
  struct Learner {
    std::unique_ptr<Model> model;
    std::unique_ptr<Optimizer> optimizer;
    std::unique_ptr<ParamSync> sync;
    ScheduleConfig lr_schedule;  // total_steps resolved
    Generator dropout_rng;
  };
  // Where the run stands; a resume restores step and epoch.
  struct Position {
    int64_t step = 0;   // optimizer steps done
    int64_t epoch = 0;  // 0-based
    int64_t steps_per_epoch = 0, total_steps = 0;
  };
  // What the run reports and leaves behind.
  struct Outputs {
    TraceRecorder trace;
    std::unique_ptr<MetricsLog> metrics;  // rank 0 only
    std::unique_ptr<Progress> progress;
    std::unique_ptr<StepTally> tally;  // the training loss and hits between log lines
    std::string last_checkpoint;
    int64_t last_checkpoint_step = -1;
    EvalResult last_eval;
    int64_t last_eval_step = -1;
    int64_t skipped_steps = 0, skipped_in_a_row = 0;  // train.on_nonfinite=skip
  };

  TrainConfig config;
  Runtime runtime;
  Datasets datasets;
  Learner learner;
  Position position;
  Outputs outputs;

  // Setup, in this order.
  void start_runtime();
  void probe_outputs() const;
  void open_data();
  std::unique_ptr<data::BatchSource> open_source(const std::string& path, bool training) const;
  void build_learner();
  void plan_steps();
  std::string choose_resume_checkpoint() const;
  void resume();
  void broadcast_parameters();
  void open_outputs();
  void warn_if_checkpoints_will_not_fit() const;

  bool epoch_done() const;
  void start_epoch_if_done();
  StepStats train_step();
  bool micro_step(PassContext& ctx, bool last_of_accumulation);
  ProgressStatus progress_status(float lr, double elapsed_s, int64_t start_step) const;
  EvalResult evaluate();
  void evaluate_and_report(Clock::time_point run_begin);
  void save_checkpoint();
  void write_checkpoint_file_on_rank0();
  void shard_optimizer(bool announce);
  void unshard_optimizer();
  TrainResult finish_run(bool interrupted, int64_t start_step, Clock::time_point run_begin);
  std::optional<std::string> after_nonfinite_step(const StepStats& stats);
  TrainResult fail_run(std::string failure, int64_t start_step, Clock::time_point run_begin);

  bool rank0() const { return runtime.comm->rank() == 0; }
  struct ModelBatch {
    Tensor x, y;  // the model's input [B, input_shape...] and the labels, on the model's device
  };
  ModelBatch to_model(const data::Batch& b, const data::DatasetInfo& source);
  void wait_collective(const Work& work, const char* what) const;
};

// On a GPU the batch travels through the stager and raw u8 pixels are normalised there.
Trainer::State::ModelBatch Trainer::State::to_model(const data::Batch& b, const data::DatasetInfo& source) {
  Shape shape{b.size()};
  for (int64_t d : learner.model->config().input_shape) shape.push_back(d);
  if (runtime.device.is_cpu()) return {b.x.view(shape), b.y};
  data::BatchStager::Staged staged = datasets.stager->stage(b);
  if (staged.x.dtype() == DType::u8) staged.x = ops::to_dtype(staged.x, DType::f32, source.x_scale, source.x_shift);
  return {staged.x.view(shape), staged.y};
}

void Trainer::State::wait_collective(const Work& work, const char* what) const {
  wait_or_abort(work, config.comm.timeout_s, what);
}

// ---- setup steps --------------------------------------------------------------------------

void Trainer::State::start_runtime() {
  const TrainConfig& c = config;
  runtime.env = detect_launch_env();
  runtime.device = choose_device(c.train.device, runtime.env);
  DTRAIN_CHECK(c.train.precision == "f32" || runtime.device.is_cuda(), "train.precision=", c.train.precision,
               " needs a cuda device, this run trains on ", runtime.device.str(),
               " (OpenBLAS has no bf16 GEMM): use train.precision=f32 on the CPU");
  if (runtime.device.is_cuda()) {
    gpu::set_device(runtime.device.index);
    gpu::set_gemm_math(c.train.precision == "bf16" ? gpu::GemmMath::bf16
                       : c.train.allow_tf32        ? gpu::GemmMath::tf32
                                                   : gpu::GemmMath::f32);
  }

  CommOptions comm_options;
  comm_options.backend = c.comm.backend;
  comm_options.model_device = runtime.device;
  comm_options.gpu = runtime.device.is_cuda() ? runtime.device.index : -1;
  comm_options.log_world = false;
  comm_options.fingerprint = c.comm.fingerprint;
  comm_options.timeout_s = c.comm.timeout_s;
  runtime.comm = make_communicator(comm_options);
  Communicator& comm = *runtime.comm;
  init_logging(comm.rank(), comm.size(), c.log.all_ranks);
  spdlog::set_level(comm.rank() == 0 || c.log.all_ranks ? spdlog::level::from_str(c.log.level) : spdlog::level::warn);
  log_info("dtrain {} train: config {}, launcher {}", DTRAIN_VERSION, c.source.empty() ? "(none)" : c.source,
           runtime.env.launcher);
  describe_world(comm, true);
  if (runtime.device.is_cpu()) set_blas_threads_per_rank(c.train.threads, comm.local_size());
}

// The data comes before the model: it fixes the model's input shape and classes.
void Trainer::State::open_data() {
  TrainConfig& c = config;
  datasets.tokens = data::is_token_dataset(c.data.train);
  check_data_kind(c.model, "data.train", c.data.train, datasets.tokens);
  datasets.train_loader = open_source(c.data.train, true);
  if (runtime.device.is_cuda()) datasets.stager = std::make_unique<data::BatchStager>(runtime.device);
  datasets.train_info = datasets.train_loader->info();
  const data::DatasetInfo& train = datasets.train_info;
  c.model.input_shape = resolve_input_shape(c.model, train);
  if (datasets.tokens && c.model.vocab > 0) c.model.num_classes = c.model.vocab;
  if (c.model.num_classes == 0) c.model.num_classes = train.num_classes;
  DTRAIN_CHECK(c.model.num_classes >= train.num_classes, "config key model.", datasets.tokens ? "vocab" : "num_classes",
               ": ", c.model.num_classes, " is less than the ", train.num_classes,
               datasets.tokens ? " tokens" : " classes", " of ", c.data.train);
  if (c.data.test.empty()) return;
  check_data_kind(c.model, "data.test", c.data.test, data::is_token_dataset(c.data.test));
  datasets.test_loader = open_source(c.data.test, false);
  const data::DatasetInfo& test = datasets.test_loader->info();
  DTRAIN_CHECK(datasets.tokens || test.sample_shape == train.sample_shape, "config key data.test: samples of ",
               c.data.test, " are ", test.sample_shape.str(), ", the training data's are ", train.sample_shape.str());
  DTRAIN_CHECK(test.num_classes <= c.model.num_classes, "config key data.test: ", c.data.test, " has ",
               test.num_classes, datasets.tokens ? " tokens" : " classes", ", the model ", c.model.num_classes);
}

// This rank's batches of `path`: windows of a token corpus, or a classification file's samples.
std::unique_ptr<data::BatchSource> Trainer::State::open_source(const std::string& path, bool training) const {
  const Communicator& comm = *runtime.comm;
  if (datasets.tokens)
    return std::make_unique<data::TokenWindows>(path, comm.rank(), comm.size(), token_window_options(config, training));
  return std::make_unique<data::Loader>(path, comm.rank(), comm.size(),
                                        loader_options(config, runtime.device, training));
}

void Trainer::State::build_learner() {
  const TrainConfig& c = config;
  Communicator& comm = *runtime.comm;
  learner.model = create_model(c.model);
  learner.model->build(runtime.device, c.train.seed);
  learner.optimizer = make_optimizer(c.optim, learner.model->arena());
  ParamSyncOptions sync_options;
  sync_options.bucket_bytes = static_cast<int64_t>(c.comm.bucket_mb * (1 << 20));
  sync_options.first_bucket_bytes = static_cast<int64_t>(c.comm.first_bucket_mb * (1 << 20));
  sync_options.timeout_s = c.comm.timeout_s;
  sync_options.check_every_steps = c.comm.check_every;
  sync_options.compress_bf16 = c.comm.compress == "bf16";
  // The loss gradient is summed over samples and the averaging is applied by the optimizer's pass:
  // no pass over the gradients before or after the all-reduce.
  sync_options.defer_average = true;
  sync_options.summed_gradients = true;
  sync_options.zero = c.comm.zero;
  sync_options.signature = learner.model->signature();
  learner.sync = std::make_unique<ParamSync>(comm, learner.model->arena(), sync_options);
  learner.sync->verify_signature();
  learner.dropout_rng =
      Generator(RngKey{c.train.seed, static_cast<uint32_t>(comm.rank()), static_cast<uint32_t>(RngPurpose::dropout)});
}

// Steps per epoch and in all (train.max_steps or train.epochs), the schedule's length, and the
// log lines that describe the model and the data per step.
void Trainer::State::plan_steps() {
  const TrainConfig& c = config;
  const int64_t samples_per_epoch = datasets.train_loader->samples_per_epoch();
  const int64_t micro_batches = (samples_per_epoch + c.train.batch_size - 1) / c.train.batch_size;
  position.steps_per_epoch = (micro_batches + c.train.accumulation - 1) / c.train.accumulation;
  DTRAIN_CHECK(position.steps_per_epoch > 0, "data.train: ", c.data.train, " has no samples");
  position.total_steps = c.train.max_steps > 0 ? c.train.max_steps : c.train.epochs * position.steps_per_epoch;
  learner.lr_schedule = c.schedule;
  if (learner.lr_schedule.total_steps == 0) learner.lr_schedule.total_steps = position.total_steps;

  const int64_t params = learner.model->arena().numel();
  const int world = runtime.comm->size();
  log_info("model {}: {} parameters ({:.1f} MiB) on {}, {} gradient bucket(s); optimizer {}, lr {}", c.model.type,
           params, params * 4.0 / (1 << 20), runtime.device.str(), learner.sync->buckets().size(), c.optim.type,
           c.optim.lr);
  log_info(
      "data {}: {} samples, {} per rank per epoch, batch {} x {} rank(s) x {} micro-step(s) = {} per step, "
      "{} steps per epoch",
      c.data.train, datasets.train_info.size, samples_per_epoch, c.train.batch_size, world, c.train.accumulation,
      c.train.batch_size * world * c.train.accumulation, position.steps_per_epoch);
}

// Every rank starts from rank 0's parameters and optimizer slots.
void Trainer::State::broadcast_parameters() {
  std::vector<Tensor> extra;
  for (auto& [name, slot] : learner.optimizer->slots()) extra.push_back(*slot);
  learner.sync->broadcast_parameters(extra);
}

// Rank 0 writes every output (metrics, config.ini, checkpoints, the trace): it proves each place
// writable now, before data, model and steps, rather than at the first checkpoint, which with
// checkpoint.every = 0 is the end of the run.
void Trainer::State::probe_outputs() const {
  if (!rank0()) return;
  probe_writable_directory(config.log.dir, "log.dir");
  probe_writable_directory(config.checkpoint_dir(),
                           config.checkpoint.dir.empty() ? "checkpoint dir (log.dir/ckpt)" : "checkpoint.dir");
  if (!config.log.trace.empty()) {
    const std::string parent = std::filesystem::path(config.log.trace).parent_path().string();
    probe_writable_directory(parent.empty() ? "." : parent, "the folder of log.trace");
  }
}

// A warning when the checkpoint directory's file system has less room than two checkpoints need
// (the one being written and the last one kept); a full disk still ends the run at that checkpoint
// with "No space left on device", but the user hears of it before the run spends its time.
void Trainer::State::warn_if_checkpoints_will_not_fit() const {
  struct statvfs fs_info {};
  if (::statvfs(config.checkpoint_dir().c_str(), &fs_info) != 0) return;
  const double free_bytes = static_cast<double>(fs_info.f_bavail) * static_cast<double>(fs_info.f_frsize);
  const double one = static_cast<double>(learner.model->arena().numel()) * sizeof(float) *
                     static_cast<double>(1 + learner.optimizer->slots().size());
  if (free_bytes < 2 * one)
    log_warn(
        "checkpoint dir {} has {:.1f} MiB free; a checkpoint takes about {:.1f} MiB: the run will fail at a "
        "checkpoint unless space is freed",
        config.checkpoint_dir(), free_bytes / (1 << 20), one / (1 << 20));
}

void Trainer::State::open_outputs() {
  const TrainConfig& c = config;
  if (rank0()) {
    ensure_directory(c.log.dir);
    write_file_atomic(c.log.dir + "/config.ini", to_ini(c));
    outputs.metrics = std::make_unique<MetricsLog>(c.log.dir + "/metrics.jsonl");
    warn_if_checkpoints_will_not_fit();
  }
  // mpirun gives every rank a pseudo-terminal even when its own output goes to a file, so "auto"
  // draws a bar only for a single process on a terminal.
  const std::string progress = c.log.progress == "auto" && runtime.env.launcher != "single" ? "lines" : c.log.progress;
  outputs.progress = std::make_unique<Progress>(progress, rank0());
  // A log line comes at least every log_every steps: the tally holds them, plus the step on which
  // a stop request ends the run.
  outputs.tally = std::make_unique<StepTally>(runtime.device, (c.train.log_every + 1) * c.train.accumulation);
  if (!c.log.trace.empty()) {
    wait_collective(runtime.comm->barrier(), "barrier before the trace starts");
    outputs.trace = TraceRecorder(runtime.comm->rank(), Clock::now());
  }
}

Trainer::Trainer(TrainConfig config) : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.config = std::move(config);
  s.start_runtime();
  s.probe_outputs();
  s.open_data();
  s.build_learner();
  s.plan_steps();
  s.resume();
  s.broadcast_parameters();
  if (s.config.comm.zero == 1) s.shard_optimizer(true);
  s.open_outputs();
}

Trainer::~Trainer() = default;

const TrainConfig& Trainer::config() const { return s_->config; }
Model& Trainer::model() { return *s_->learner.model; }
Communicator& Trainer::communicator() { return *s_->runtime.comm; }

// ---- resume and checkpoints ---------------------------------------------------------------

// --resume auto | auto-or-fresh: the newest checkpoint that verifies, chosen by rank 0 so every rank
// loads the same file even if a newer one appears meanwhile; "" to start from step 0. With "auto",
// checkpoints that are all damaged end the run: training from scratch over them would hide the
// damage.
std::string Trainer::State::choose_resume_checkpoint() const {
  const std::string& how = config.checkpoint.resume;
  const std::string dir = config.checkpoint_dir();
  std::string failure;
  ResumeChoice choice;
  if (rank0()) {
    choice = find_resumable_checkpoint(dir);
    if (choice.path.empty() && !choice.rejected.empty() && how == "auto") {
      failure = detail::concat("--resume auto: none of the ", choice.rejected.size(), " checkpoint(s) in ", dir,
                               " can be trusted (");
      for (size_t i = 0; i < choice.rejected.size(); ++i)
        failure += detail::concat(i ? "; " : "", choice.rejected[i].first, ": ", choice.rejected[i].second);
      failure += "); resume from a checkpoint you trust (--resume PATH) or start again with --resume auto-or-fresh";
    }
  }
  const std::vector<std::string> shared =
      allgather_strings(*runtime.comm, failure.empty() ? choice.path : "\n" + failure);
  if (!shared[0].empty() && shared[0][0] == '\n') fail(shared[0].substr(1));
  if (shared[0].empty())
    log_info("resume {}: no {}checkpoint in {}; starting from step 0", how,
             choice.rejected.empty() ? "" : "trustworthy ", dir);
  return shared[0];
}

void Trainer::State::resume() {
  const std::string& how = config.checkpoint.resume;
  if (how == "none") return;
  const std::string path = how == "auto" || how == "auto-or-fresh" ? choose_resume_checkpoint() : how;
  if (path.empty()) return;
  const CheckpointMeta meta =
      load_checkpoint(path, learner.model->arena(), learner.optimizer.get(), learner.model->signature());
  position.step = meta.step;
  position.epoch = meta.epoch;
  outputs.last_checkpoint_step = position.step;
  outputs.last_checkpoint = path;
  if (meta.test_accuracy >= 0) outputs.last_eval = {meta.test_loss, meta.test_accuracy, 0};
  data::SamplerState sampler = meta.sampler;
  const int world = runtime.comm->size(), rank = runtime.comm->rank();
  if (meta.world_size == world) {
    learner.dropout_rng.set_offset(meta.rng_offsets.at(rank));
  } else {
    // Same global position in the epoch, resharded; dropout streams cannot carry over.
    sampler.position = std::min(sampler.position * meta.world_size / world, datasets.train_loader->samples_per_epoch());
    if (rank0())
      log_warn(
          "resuming a {}-rank checkpoint on {} ranks: the sampler reshards epoch {} at sample {} of each rank, "
          "dropout streams restart; the run is not bit-identical to an uninterrupted one",
          meta.world_size, world, sampler.epoch, sampler.position);
  }
  datasets.train_loader->restore(sampler);
  log_info("resumed from {} at step {} (epoch {}, sample {} of the epoch on each rank)", path, position.step,
           position.epoch + 1, sampler.position);
  if (position.step >= position.total_steps)
    log_warn("the checkpoint is at step {}, the configured run ends at step {}: nothing left to train", position.step,
             position.total_steps);
}

// ZeRO-1: each rank's optimizer holds its shard of the state; a checkpoint holds it whole, so it
// resumes at any world size, with or without comm.zero. Collective; only rank 0, which writes,
// holds the whole state (the others a bucket of it at a time).
void Trainer::State::unshard_optimizer() {
  std::vector<Tensor> full;
  const ParameterArena& arena = learner.model->arena();
  for (const auto& [name, slot] : learner.optimizer->slots()) {
    Tensor whole = rank0() ? Tensor::zeros(Shape{arena.numel()}, DType::f32, arena.device()) : Tensor();
    learner.sync->gather_shards(*slot, rank0() ? &whole : nullptr);
    full.push_back(whole);
  }
  if (rank0()) learner.optimizer->unshard(std::move(full));
}

void Trainer::State::shard_optimizer(bool announce) {
  const int64_t whole = learner.optimizer->state_bytes();
  learner.optimizer->shard(learner.sync->shard());
  if (!announce) return;
  log_info(
      "comm.zero=1: optimizer state {:.3f} MiB on each rank, its shard of {:.3f} MiB ({:.3f} of it, 1/{} is {:.3f})",
      learner.optimizer->state_bytes() / 1048576.0, whole / 1048576.0,
      static_cast<double>(learner.optimizer->state_bytes()) / static_cast<double>(std::max<int64_t>(whole, 1)),
      runtime.comm->size(), 1.0 / runtime.comm->size());
}

void Trainer::State::save_checkpoint() {
  learner.sync->wait_parameters();  // comm.zero=1: the last step's all-gathers
  const bool sharded = config.comm.zero == 1;
  if (sharded) unshard_optimizer();
  write_checkpoint_file_on_rank0();
  if (sharded && rank0()) shard_optimizer(false);
}

void Trainer::State::write_checkpoint_file_on_rank0() {
  // Every rank's dropout stream offset, for rank 0 to store.
  Tensor offset = Tensor::from_vector(std::vector<int64_t>{static_cast<int64_t>(learner.dropout_rng.offset())},
                                      Shape{1}, runtime.comm->device());
  Tensor all = Tensor::zeros(Shape{runtime.comm->size()}, DType::i64, runtime.comm->device());
  wait_collective(runtime.comm->allgather(offset, all), "allgather of the RNG offsets for a checkpoint");
  outputs.last_checkpoint_step = position.step;
  if (!rank0()) return;
  const auto begin = Clock::now();
  CheckpointMeta meta;
  meta.step = position.step;
  meta.epoch = position.epoch;
  meta.world_size = runtime.comm->size();
  meta.sampler = datasets.train_loader->state();
  for (int64_t o : all.to_vector<int64_t>()) meta.rng_offsets.push_back(static_cast<uint64_t>(o));
  meta.optimizer_type = config.optim.type;
  meta.optimizer_steps = learner.optimizer->steps();
  meta.config = to_ini(config);
  meta.signature = learner.model->signature();
  meta.dtrain_version = DTRAIN_VERSION;
  meta.test_accuracy = outputs.last_eval.accuracy;
  meta.test_loss = outputs.last_eval.loss;
  meta.input_dtype = dtype_name(datasets.train_info.x_dtype);
  meta.x_scale = datasets.train_info.x_scale;
  meta.x_shift = datasets.train_info.x_shift;
  const std::string path = checkpoint_path(config.checkpoint_dir(), position.step);
  const int64_t bytes = write_checkpoint(path, learner.model->arena(), learner.optimizer.get(), meta);
  prune_checkpoints(config.checkpoint_dir(), config.checkpoint.keep_last);
  outputs.last_checkpoint = path;
  const double secs = seconds_since(begin);
  outputs.trace.span("checkpoint", begin, Clock::now(), TraceRecorder::compute, position.step);
  outputs.progress->message(detail::concat("checkpoint ", path, " (", bytes >> 20, " MiB in ", secs, " s)"));
}

// ---- evaluation ---------------------------------------------------------------------------

EvalResult Trainer::State::evaluate() {
  DTRAIN_CHECK(datasets.test_loader, "evaluate: no test data (data.test is empty)");
  learner.sync->wait_parameters();  // comm.zero=1: the last step's all-gathers
  const auto begin = Clock::now();
  data::BatchSource& loader = *datasets.test_loader;
  Communicator& comm = *runtime.comm;
  loader.set_epoch(0);
  const int world = comm.size(), rank = comm.rank();
  const int64_t n = loader.info().size;
  PassContext ctx;
  ctx.training = false;
  double loss_sum = 0;
  int64_t correct = 0, counted = 0, k = 0;
  while (std::optional<data::Batch> b = loader.next()) {
    const ModelBatch in = to_model(*b, loader.info());
    const Predictions p = as_rows(learner.model->forward(in.x, ctx), in.y);
    const LossOutput loss = softmax_cross_entropy(p.logits, p.labels, 1.0f);
    const std::vector<float> per_row = loss.per_sample.to_vector<float>();
    const std::vector<int64_t> predicted = ops::argmax_rows(p.logits).to_vector<int64_t>();
    const int64_t* y = b->y.data<int64_t>();
    const int64_t rows_per_sample = static_cast<int64_t>(per_row.size()) / b->size();
    for (int64_t i = 0; i < b->size(); ++i, ++k) {
      // The sampler pads the last round by wrapping around: global position rank + k * world
      // beyond the dataset is a repeat, counted once already.
      if (rank + k * world >= n) continue;
      for (int64_t r = i * rows_per_sample; r < (i + 1) * rows_per_sample; ++r) {
        ++counted;
        loss_sum += per_row[r];
        correct += predicted[r] == y[r];
      }
    }
  }
  Tensor counts = Tensor::from_vector(std::vector<int64_t>{correct, counted}, Shape{2}, comm.device());
  Tensor losses = Tensor::from_vector(std::vector<float>{static_cast<float>(loss_sum)}, Shape{1}, comm.device());
  wait_collective(comm.allreduce(counts, ReduceOp::sum), "allreduce of the evaluation counts");
  wait_collective(comm.allreduce(losses, ReduceOp::sum), "allreduce of the evaluation loss");
  const std::vector<int64_t> total = counts.to_vector<int64_t>();
  EvalResult result;
  result.samples = total[1];
  result.accuracy = total[1] > 0 ? static_cast<double>(total[0]) / static_cast<double>(total[1]) : 0.0;
  result.loss = total[1] > 0 ? losses.to_vector<float>()[0] / static_cast<double>(total[1]) : 0.0;
  outputs.trace.span("evaluate", begin, Clock::now(), TraceRecorder::compute, position.step);
  return result;
}

EvalResult Trainer::evaluate() { return s_->evaluate(); }

// Without test data: nothing. Otherwise a progress message and a metrics.jsonl "eval" record.
void Trainer::State::evaluate_and_report(Clock::time_point run_begin) {
  if (!datasets.test_loader) return;
  outputs.last_eval = evaluate();
  const EvalResult& eval = outputs.last_eval;
  outputs.last_eval_step = position.step;
  // A model of tokens: the loss per token in nats and bits (per byte, for a corpus of bytes).
  const std::string bits =
      datasets.tokens ? detail::concat(" nats/token (", eval.loss / std::log(2.0), " bits/token)") : std::string();
  outputs.progress->message(detail::concat("eval step ", position.step, " epoch ", position.epoch + 1, ": test loss ",
                                           eval.loss, bits, ", test accuracy ", eval.accuracy, " (", eval.samples,
                                           datasets.tokens ? " tokens)" : " samples)"));
  if (outputs.metrics)
    outputs.metrics->record(JsonObject()
                                .add("type", "eval")
                                .add("step", position.step)
                                .add("epoch", position.epoch + 1)
                                .add("test_loss", eval.loss)
                                .add("test_accuracy", eval.accuracy)
                                .add("samples", eval.samples)
                                .add("time_s", seconds_since(run_begin)));
}

// ---- the training step --------------------------------------------------------------------

bool Trainer::State::epoch_done() const {
  return datasets.train_loader->state().position >= datasets.train_loader->samples_per_epoch();
}

void Trainer::State::start_epoch_if_done() {
  if (!epoch_done()) return;
  ++position.epoch;
  datasets.train_loader->set_epoch(position.epoch);
}

// One optimizer step on this rank: the step's micro-batches (fewer at an epoch's end), with
// ParamSync all-reducing the gradients as backward produces them; then clipping, the scheduled
// learning rate and the optimizer.
StepStats Trainer::State::train_step() {
  const TrainConfig& c = config;
  ParameterArena& arena = learner.model->arena();
  PassContext ctx;
  ctx.training = true;
  ctx.dropout_rng = &learner.dropout_rng;
  ctx.arena = &arena;
  ctx.input_grad = false;  // the batch is data: no gradient for it

  StepStats stats;
  outputs.tally->begin_step();
  arena.zero_grad();
  for (int micro = 0; micro < c.train.accumulation; ++micro)
    if (micro_step(ctx, micro + 1 == c.train.accumulation)) break;

  // The gradients are all-reduced, so every rank sees the same norm: a non-finite one drops the
  // update on every rank alike, with no collective (train.on_nonfinite decides what follows).
  const auto begin = Clock::now();
  // The norm's read is the step's one host wait; the scale after it may read the global sample
  // count from the GPU (nccl) without waiting again.
  const double sum_squares = learner.sync->gradient_sum_squares();
  const float average = learner.sync->grad_scale();  // the arena holds sums: the optimizer averages
  stats.grad_norm = static_cast<float>(std::sqrt(sum_squares)) * average;
  stats.lr = learning_rate(learner.lr_schedule, c.optim.lr, position.step);
  if (std::isfinite(stats.grad_norm)) {
    learner.optimizer->step(arena, stats.lr, average * clip_coefficient(c.clip_norm, stats.grad_norm));
    learner.sync->gather_parameters();  // comm.zero=1: each rank updated its shard; the next forward waits
  } else {
    if (learner.optimizer->sharded()) {  // comm.zero=1: each rank sees only its shard's gradients
      stats.nonfinite = first_nonfinite_gradient(arena, &learner.optimizer->shard_spans());
      if (stats.nonfinite.empty()) stats.nonfinite = "a parameter in another rank's shard (comm.zero=1)";
    } else {
      stats.nonfinite = first_nonfinite_gradient(arena);
    }
  }
  // After the update: on a GPU the collectives' timings are known once the device is past them,
  // which the gradient norm's read has waited for.
  const SyncStats& sync_stats = learner.sync->last_stats();
  for (const SyncStats::Span& span : sync_stats.collectives)
    outputs.trace.span(span.name, span.begin, span.end, TraceRecorder::comm, position.step);
  stats.comm_s = sync_stats.comm_s;
  stats.gather_s = sync_stats.gather_s;
  stats.gather_wait_s = sync_stats.gather_wait_s;
  ++position.step;
  learner.sync->after_step(position.step);
  outputs.trace.span("optimizer", begin, Clock::now(), TraceRecorder::compute, position.step - 1);
  return stats;
}

// Forward, loss and backward of one micro-batch; the step's last one (the accumulation's or the
// epoch's) lets ParamSync finish the all-reduces. Returns whether it was the last.
bool Trainer::State::micro_step(PassContext& ctx, bool last_of_accumulation) {
  const int64_t step = position.step;
  const auto t0 = Clock::now();
  std::optional<data::Batch> batch = datasets.train_loader->next();
  DTRAIN_CHECK(batch, "internal: the loader ran out of samples inside a step");
  const bool last = last_of_accumulation || epoch_done();
  const auto t1 = Clock::now();
  outputs.trace.span("data wait", t0, t1, TraceRecorder::compute, step);
  const int64_t b = batch->size();
  const ModelBatch in = to_model(*batch, datasets.train_info);
  const Tensor logits = learner.model->forward(in.x, ctx);
  const Predictions p = as_rows(logits, in.y);
  // The gradient of the loss summed over the micro-batch's samples (each sample's mean over its
  // rows: tokens for a language model), as ParamSync's summed_gradients expects.
  // The loader and the token windows checked every label against the classes when they read it.
  const LossOutput loss = softmax_cross_entropy(
      p.logits, p.labels, static_cast<float>(b) / static_cast<float>(p.labels.numel()), Labels::checked);
  const auto t2 = Clock::now();
  outputs.trace.span("forward", t1, t2, TraceRecorder::compute, step);
  learner.sync->begin_backward(last, b);
  learner.model->backward(loss.grad.view(logits.shape()), ctx);
  const auto t3 = Clock::now();
  outputs.trace.span("backward", t2, t3, TraceRecorder::compute, step);
  learner.sync->finish_backward();
  if (last) outputs.trace.span("allreduce wait", t3, Clock::now(), TraceRecorder::compute, step);
  outputs.tally->add(loss.per_sample, p.logits, p.labels);  // read at the next log line
  return last;
}

// ---- the training loop --------------------------------------------------------------------

namespace {

// What follows the step that brought the count to `step`.
bool log_due(const TrainConfig& c, int64_t step, int64_t total_steps, bool stopping) {
  return step % c.train.log_every == 0 || step == total_steps || stopping;
}
bool evaluation_due(const TrainConfig& c, int64_t step, bool epoch_end) {
  return (c.train.eval_every > 0 && step % c.train.eval_every == 0) || (c.train.eval_every == 0 && epoch_end);
}
bool checkpoint_due(const TrainConfig& c, int64_t step) {
  return c.checkpoint.every > 0 && step % c.checkpoint.every == 0;
}
bool stop_step_reached(const TrainConfig& c, int64_t step) {
  return c.train.stop_at_step > 0 && step >= c.train.stop_at_step;
}

// Every rank votes on stopping at the start of a step; the vote (an all-reduce of the votes'
// maximum) travels while the step computes. A single process needs no vote. Where the
// communicator reduces on a GPU (nccl), the vote is read back to the host, which waits for the
// whole step: there the ranks vote only on the steps that end with a log line (which read the GPU
// anyway), so a stop request takes effect within train.log_every steps.
class StopVote {
 public:
  StopVote(Communicator& comm, double timeout_s, int64_t log_every)
      : comm_(comm),
        timeout_s_(timeout_s),
        every_(comm.device().is_cpu() ? 1 : log_every),
        flag_(Tensor::zeros(Shape{1}, DType::i32, comm.device())) {}
  // Before the step that will bring the step count to `step`.
  void start(int64_t step) {
    voting_ = comm_.size() > 1 && step % every_ == 0;
    if (!voting_) return;
    flag_.copy_from(Tensor::from_vector(std::vector<int32_t>{stop_requested() ? 1 : 0}, Shape{1}));
    vote_ = comm_.allreduce(flag_, ReduceOp::max);
  }
  // Whether a rank voted to stop (a single process: whether a stop is requested by now).
  bool finish() const {
    if (comm_.size() == 1) return stop_requested();
    if (!voting_) return false;
    wait_or_abort(vote_, timeout_s_, "allreduce of the stop vote");
    return flag_.to_vector<int32_t>()[0] != 0;
  }

 private:
  Communicator& comm_;
  double timeout_s_;
  int64_t every_;
  Tensor flag_;
  Work vote_;
  bool voting_ = false;
};

}  // namespace

// Where the run stands after a step, for the progress display (the log window adds the statistics).
ProgressStatus Trainer::State::progress_status(float lr, double elapsed_s, int64_t start_step) const {
  ProgressStatus status;
  status.epoch = position.epoch;
  status.epochs = (position.total_steps + position.steps_per_epoch - 1) / position.steps_per_epoch;
  status.step = position.step;
  status.total_steps = position.total_steps;
  status.lr = lr;
  if (datasets.tokens) status.rate_unit = "tokens";
  status.eta_s = elapsed_s / static_cast<double>(position.step - start_step) *
                 static_cast<double>(position.total_steps - position.step);
  return status;
}

TrainResult Trainer::run() {
  State& s = *s_;
  const TrainConfig& c = s.config;
  const State::Position& at = s.position;
  const data::BatchSource& loader = *s.datasets.train_loader;
  const int64_t start_step = at.step;
  const auto run_begin = Clock::now();
  LogWindow window(*s.runtime.comm, c.comm.timeout_s, *s.outputs.tally, *s.outputs.progress, s.outputs.metrics.get(),
                   run_begin, loader.wait_seconds());
  StopVote stop_vote(*s.runtime.comm, c.comm.timeout_s, c.train.log_every);
  bool interrupted = false;
  while (at.step < at.total_steps) {
    s.start_epoch_if_done();
    s.runtime.comm->set_step_tag(at.step);  // in every collective's fingerprint from here on
    stop_vote.start(at.step + 1);
    const StepStats stats = s.train_step();
    window.add(stats);
    const bool signalled = stop_vote.finish();
    if (!std::isfinite(stats.grad_norm)) {
      if (auto failure = s.after_nonfinite_step(stats)) return s.fail_run(std::move(*failure), start_step, run_begin);
    } else {
      s.outputs.skipped_in_a_row = 0;
    }
    const bool stop = signalled || stop_step_reached(c, at.step);
    const bool epoch_end = s.epoch_done();
    const double elapsed = seconds_since(run_begin);
    const ProgressStatus status = s.progress_status(stats.lr, elapsed, start_step);
    window.update(status);
    if (log_due(c, at.step, at.total_steps, stop)) window.report(status, elapsed, loader.wait_seconds());
    if (evaluation_due(c, at.step, epoch_end)) s.evaluate_and_report(run_begin);
    if (checkpoint_due(c, at.step)) s.save_checkpoint();
    if (stop) {
      interrupted = true;
      s.outputs.progress->message(
          detail::concat(signalled ? "stop requested (SIGINT/SIGTERM/SIGUSR1)" : "train.stop_at_step reached",
                         ": stopping after step ", at.step, " of ", at.total_steps));
      break;
    }
  }
  return s.finish_run(interrupted, start_step, run_begin);
}

// A step whose gradient norm was not finite (its update was dropped): with train.on_nonfinite=skip a
// "skip" record, and nothing more until train.max_skipped in a row; otherwise, and then, the reason
// the run ends. Every rank takes the same branch: the norm is the same everywhere.
std::optional<std::string> Trainer::State::after_nonfinite_step(const StepStats& stats) {
  const double loss = outputs.tally->last_step_mean_loss();
  const std::string what = detail::concat(
      "step ", position.step, " has a gradient norm of ", stats.grad_norm, " after the all-reduce (loss on rank ",
      runtime.comm->rank(), ": ", loss, "); ",
      stats.nonfinite.empty() ? "every gradient element is finite, but the sum of their squares overflows"
                              : "the first non-finite gradient: " + stats.nonfinite);
  const std::string kept =
      outputs.last_checkpoint.empty()
          ? std::string("; no checkpoint was written before it")
          : detail::concat("; the last good checkpoint is ", outputs.last_checkpoint, " (step ",
                           outputs.last_checkpoint_step, "): resume from it with a lower optim.lr or optim.clip_norm");
  if (config.train.on_nonfinite != "skip") return "train.on_nonfinite=stop: " + what + kept;
  ++outputs.skipped_steps;
  ++outputs.skipped_in_a_row;
  outputs.progress->message("skipped the update of " + what);
  if (outputs.metrics)
    outputs.metrics->record(JsonObject()
                                .add("type", "skip")
                                .add("step", position.step)
                                .add("grad_norm", static_cast<double>(stats.grad_norm))
                                .add("loss", loss)
                                .add("gradient", stats.nonfinite)
                                .add("skipped_steps", outputs.skipped_steps));
  if (outputs.skipped_in_a_row < config.train.max_skipped) return std::nullopt;
  return detail::concat("train.on_nonfinite=skip: ", outputs.skipped_in_a_row,
                        " steps in a row had non-finite gradients (train.max_skipped); the last: ", what, kept);
}

// The end of a run that cannot be trusted to go on: no checkpoint of the current state (the last
// good one stays as it is), the trace still written, and the reason for cmd_train to report.
TrainResult Trainer::State::fail_run(std::string failure, int64_t start_step, Clock::time_point run_begin) {
  outputs.progress->finish();
  if (outputs.trace.enabled()) outputs.trace.write(*runtime.comm, config.log.trace);
  TrainResult result;
  result.interrupted = true;
  result.seconds = seconds_since(run_begin);
  result.steps = position.step;
  result.epoch = position.epoch;
  result.test = outputs.last_eval;
  result.checkpoint = outputs.last_checkpoint;
  result.skipped_steps = outputs.skipped_steps;
  result.failure = std::move(failure);
  log_info("stopped after {} steps ({} this run, {:.1f} s)", position.step, position.step - start_step, result.seconds);
  return result;
}

// After the loop: the last evaluation and checkpoint unless the last step made them, the trace
// file, and the summary line.
TrainResult Trainer::State::finish_run(bool interrupted, int64_t start_step, Clock::time_point run_begin) {
  learner.sync->wait_parameters();  // comm.zero=1: the parameters are whole when training ends
  if (!interrupted && outputs.last_eval_step != position.step && position.step > start_step)
    evaluate_and_report(run_begin);
  if (outputs.last_checkpoint_step != position.step) save_checkpoint();
  outputs.progress->finish();
  TrainResult result;
  result.interrupted = interrupted;
  result.seconds = seconds_since(run_begin);
  if (outputs.trace.enabled()) outputs.trace.write(*runtime.comm, config.log.trace);
  result.steps = position.step;
  result.epoch = position.epoch;
  result.test = outputs.last_eval;
  result.checkpoint = outputs.last_checkpoint;
  result.skipped_steps = outputs.skipped_steps;
  const int64_t done = position.step - start_step;
  const int64_t samples_per_step = config.train.batch_size * config.train.accumulation * runtime.comm->size() *
                                   (datasets.tokens ? config.model.ctx : 1);
  log_info("{} after {} steps ({} this run, {:.1f} s, {:.0f} {}/s){}", interrupted ? "stopped" : "finished",
           position.step, done, result.seconds,
           done > 0 ? static_cast<double>(done * samples_per_step) / result.seconds : 0.0,
           datasets.tokens ? "tokens" : "samples",
           outputs.last_eval.samples > 0
               ? detail::concat(": test accuracy ", outputs.last_eval.accuracy, ", test loss ", outputs.last_eval.loss)
               : std::string());
  return result;
}

}  // namespace dtrain
