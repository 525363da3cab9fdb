// Data-parallel training of the registry "mlp" (real Linear/ReLU layers, softmax cross entropy,
// SGD with momentum from make_optimizer) through ParamSync on 2 and 4 ranks gives the parameters
// one process gets training on the global batch of the same samples: rank r takes the contiguous
// block [r * B/world, (r + 1) * B/world) of each global batch of B = 64. The reference runs on
// every rank, without communication, on a separately built model with the same seed. Small
// buckets (several per step) make the all-reduces start during backward.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "comm/param_sync.h"
#include "core/loss.h"
#include "core/model.h"
#include "optim/optimizer.h"
#include "tests/comm/mpi_comm.h"

namespace dtrain {
namespace {

using testing::comm;

constexpr int64_t kGlobalBatch = 64;
constexpr int kSteps = 20;
constexpr uint64_t kModelSeed = 11;
constexpr uint64_t kDataSeed = 23;
constexpr float kLr = 0.05f;
constexpr int64_t kClasses = 5;
const Shape kInput{1, 8, 8};

ModelConfig mlp_config() {
  ModelConfig c;
  c.type = "mlp";
  c.input_shape = kInput;
  c.hidden = {32, 16};
  c.num_classes = kClasses;
  return c;
}

OptimizerConfig sgd_config() {
  OptimizerConfig o;
  o.type = "sgd";
  o.lr = kLr;
  o.momentum = 0.9f;
  return o;
}

// The global batch of step `step`: inputs [B, 1, 8, 8] ~ N(0, 1) from the stream
// (kDataSeed, 0, test) at an offset per step; label = argmax of the sample's first 5 inputs.
struct Batch {
  Tensor x;
  std::vector<int64_t> labels;
};

Batch global_batch(int step) {
  Generator gen(RngKey{kDataSeed, 0, static_cast<uint32_t>(RngPurpose::test)},
                static_cast<uint64_t>(step) * (uint64_t{1} << 20));
  Batch b{Tensor::randn(Shape{kGlobalBatch, kInput[0], kInput[1], kInput[2]}, 0.0f, 1.0f, gen), {}};
  const int64_t per_sample = kInput.numel();
  const float* x = b.x.data<float>();
  for (int64_t i = 0; i < kGlobalBatch; ++i) {
    const float* s = x + i * per_sample;
    b.labels.push_back(std::max_element(s, s + kClasses) - s);
  }
  return b;
}

// Forward and backward of the mean loss over samples [first, first + n) of `b`; the gradients
// add into the model's arena (grad_ready reaches ParamSync's hook when one is installed).
float forward_backward(Model& model, const Batch& b, int64_t first, int64_t n) {
  PassContext ctx{.training = true, .dropout_rng = nullptr, .arena = &model.arena()};
  const Tensor x = b.x.slice(first, first + n);
  const Tensor labels = Tensor::from_vector<int64_t>(
      std::vector<int64_t>(b.labels.begin() + first, b.labels.begin() + first + n), Shape{n});
  const Tensor logits = model.forward(x, ctx);
  const LossOutput loss = softmax_cross_entropy(logits, labels, 1.0f / static_cast<float>(n));
  model.backward(loss.grad, ctx);
  return loss.mean();
}

std::unique_ptr<Model> built_model() {
  auto model = create_model(mlp_config());
  model->build(Device::cpu(), kModelSeed);
  return model;
}

// One process, the global batch of 64 per step.
struct Reference {
  std::vector<float> initial, trained;
  float first_loss = 0, last_loss = 0;
};

const Reference& reference() {
  static const Reference ref = [] {
    Reference r;
    auto model = built_model();
    auto opt = make_optimizer(sgd_config(), model->arena());
    r.initial = model->arena().values().to_vector<float>();
    for (int s = 0; s < kSteps; ++s) {
      const float loss = forward_backward(*model, global_batch(s), 0, kGlobalBatch);
      (s == 0 ? r.first_loss : r.last_loss) = loss;
      opt->step(model->arena(), kLr);
      model->arena().zero_grad();
    }
    r.trained = model->arena().values().to_vector<float>();
    return r;
  }();
  return ref;
}

// Trains on `world` ranks with B/world samples per rank, split into `micro` equal micro-batches
// (no communication on the first micro - 1). ParamSync (no sample counts) divides the sum over
// ranks and micro-steps by world x micro, which with per-micro-batch mean losses of equal
// micro-batches is the mean over the global batch.
std::vector<float> data_parallel_parameters(int micro) {
  const int world = comm().size(), rank = comm().rank();
  const int64_t local = kGlobalBatch / world;
  EXPECT_EQ(local * world, kGlobalBatch);
  EXPECT_EQ(local % micro, 0);
  const int64_t n = local / micro;
  auto model = built_model();
  auto opt = make_optimizer(sgd_config(), model->arena());
  ParamSync sync(
      comm(), model->arena(),
      {.bucket_bytes = 4096, .first_bucket_bytes = 1024, .check_every_steps = 5, .signature = model->signature()});
  EXPECT_GE(sync.buckets().size(), 3u);
  sync.verify_signature();
  std::vector<Tensor> state;
  for (auto& slot : opt->slots()) state.push_back(*slot.second);
  sync.broadcast_parameters(state);
  for (int s = 0; s < kSteps; ++s) {
    const Batch b = global_batch(s);
    for (int k = 0; k < micro; ++k) {
      sync.begin_backward(/*sync=*/k + 1 == micro);
      forward_backward(*model, b, rank * local + k * n, n);
      sync.finish_backward();
    }
    // Every bucket's all-reduce started from a grad_ready hook, during backward.
    EXPECT_EQ(sync.last_stats().buckets_during_backward, static_cast<int>(sync.buckets().size())) << "step " << s;
    opt->step(model->arena(), kLr);
    model->arena().zero_grad();
    sync.after_step(s + 1);
  }
  return model->arena().values().to_vector<float>();
}

double max_relative_difference(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::abs(static_cast<double>(want[i])));
  }
  return diff / (scale + 1e-30);
}

void expect_matches_reference(int micro) {
  const Reference& ref = reference();
  // The reference really trained: the loss fell and the parameters moved.
  EXPECT_LT(ref.last_loss, ref.first_loss);
  EXPECT_GT(max_relative_difference(ref.initial, ref.trained), 1e-2);
  const std::vector<float> got = data_parallel_parameters(micro);
  ASSERT_EQ(got.size(), ref.trained.size());
  const double rel = max_relative_difference(got, ref.trained);
  if (comm().rank() == 0)
    std::printf("world %d x %lld samples (%d micro-steps) vs 1 x %lld: max |a-b| / max |b| = %.3g\n", comm().size(),
                static_cast<long long>(kGlobalBatch / comm().size()), micro, static_cast<long long>(kGlobalBatch), rel);
  EXPECT_LE(rel, 1e-5);
}

TEST(ModelEquivalence, MlpOnAllRanksMatchesOneProcessWithTheGlobalBatch) { expect_matches_reference(1); }

TEST(ModelEquivalence, MlpWithGradientAccumulationMatchesOneProcessWithTheGlobalBatch) { expect_matches_reference(2); }

// ZeRO-1 (comm.zero = 1) against plain data parallelism, as the trainer runs both (summed
// per-sample gradients, the average and clipping folded into AdamW's pass, decay groups crossing
// the shards): the parameters and the optimizer state gathered whole must agree to reduction-order
// rounding, and each rank must hold about 1/N of the state.
struct Trained {
  std::vector<float> values;
  std::vector<std::vector<float>> state;  // every slot, whole
  int64_t state_bytes = 0;                // on this rank, during training
};

Trained train_adamw(int zero) {
  const int world = comm().size(), rank = comm().rank();
  const int64_t local = kGlobalBatch / world;
  auto model = built_model();
  OptimizerConfig o;
  o.type = "adamw";
  o.lr = 0.01f;
  o.weight_decay = 0.1f;
  auto opt = make_optimizer(o, model->arena());
  ParamSync sync(comm(), model->arena(),
                 {.bucket_bytes = 4096,
                  .first_bucket_bytes = 1024,
                  .defer_average = true,
                  .summed_gradients = true,
                  .zero = zero,
                  .signature = model->signature()});
  if (zero == 1) opt->shard(sync.shard());
  Trained t;
  t.state_bytes = opt->state_bytes();
  for (int s = 0; s < kSteps; ++s) {
    const Batch b = global_batch(s);
    sync.begin_backward(true, local);
    PassContext ctx{.training = true, .dropout_rng = nullptr, .arena = &model->arena()};
    const Tensor labels = Tensor::from_vector<int64_t>(
        std::vector<int64_t>(b.labels.begin() + rank * local, b.labels.begin() + (rank + 1) * local), Shape{local});
    const Tensor logits = model->forward(b.x.slice(rank * local, (rank + 1) * local), ctx);
    model->backward(softmax_cross_entropy(logits, labels, 1.0f).grad, ctx);  // summed over samples
    sync.finish_backward();
    const float norm = static_cast<float>(std::sqrt(sync.gradient_sum_squares())) * sync.grad_scale();
    opt->step(model->arena(), o.lr, sync.grad_scale() * clip_coefficient(0.5f, norm));
    sync.gather_parameters();
    model->arena().zero_grad();
  }
  sync.wait_parameters();
  t.values = model->arena().values().to_vector<float>();
  std::vector<Tensor> full;
  for (const auto& [name, slot] : opt->slots()) {
    full.push_back(Tensor::zeros(Shape{model->arena().numel()}));
    if (zero == 1)
      sync.gather_shards(*slot, &full.back());
    else
      full.back().copy_from(*slot);
    t.state.push_back(full.back().to_vector<float>());
  }
  return t;
}

// ZeRO-1's parameter all-gathers overlap the next forward: gather_parameters() returns with every
// bucket's in flight; a layer's first read waits for its bucket alone (the last bucket holds the
// first layer); the forward waits for the rest; a backward after a forward that asked for nothing
// is an error naming the bucket, before any bucket is launched.
TEST(ModelEquivalence, Zero1ParameterGathersOverlapTheNextForward) {
  const int world = comm().size(), rank = comm().rank();
  const int64_t local = kGlobalBatch / world;
  auto model = built_model();
  ParamSync sync(comm(), model->arena(),
                 {.bucket_bytes = 4096, .first_bucket_bytes = 1024, .zero = 1, .signature = model->signature()});
  const int buckets = static_cast<int>(sync.buckets().size());
  ASSERT_GE(buckets, 3);
  const Batch b = global_batch(0);
  const Tensor x = b.x.slice(rank * local, (rank + 1) * local);
  const Tensor labels = Tensor::from_vector<int64_t>(
      std::vector<int64_t>(b.labels.begin() + rank * local, b.labels.begin() + (rank + 1) * local), Shape{local});
  PassContext ctx{.training = true, .dropout_rng = nullptr, .arena = &model->arena()};
  sync.gather_parameters();
  EXPECT_EQ(sync.gathers_in_flight(), buckets);
  const Parameter& first = *model->arena().parameters().front();  // the first layer's weight
  model->arena().value_needed(first);
  EXPECT_EQ(sync.gathers_in_flight(), buckets - 1) << "only the bucket of '" << first.name << "'";
  const Tensor logits = model->forward(x, ctx);
  EXPECT_EQ(sync.gathers_in_flight(), 0);
  sync.begin_backward(true, local);
  model->backward(softmax_cross_entropy(logits, labels, 1.0f).grad, ctx);
  sync.finish_backward();
  // Again, but the forward runs without the arena (so it asks for nothing).
  sync.gather_parameters();
  PassContext blind{.training = true, .dropout_rng = nullptr, .arena = nullptr};
  const Tensor again = model->forward(x, blind);
  sync.begin_backward(true, local);
  try {
    model->backward(softmax_cross_entropy(again, labels, 1.0f).grad, ctx);
    ADD_FAILURE() << "the backward accepted a forward that never waited for the parameters";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the forward never asked for the parameters of allgather of parameter "
                                         "bucket"),
              std::string::npos)
        << e.what();
  }
  sync.wait_parameters();
  EXPECT_EQ(sync.gathers_in_flight(), 0);
}

TEST(ModelEquivalence, Zero1MatchesPlainDataParallelism) {
  const Trained plain = train_adamw(0), zero = train_adamw(1);
  const double rel = max_relative_difference(zero.values, plain.values);
  if (comm().rank() == 0)
    std::printf("world %d: ZeRO-1 vs plain, parameters max |a-b| / max |b| = %.3g; state %lld vs %lld bytes\n",
                comm().size(), rel, static_cast<long long>(zero.state_bytes),
                static_cast<long long>(plain.state_bytes));
  EXPECT_LE(rel, 1e-5);
  ASSERT_EQ(zero.state.size(), 2u);  // AdamW's exp_avg and exp_avg_sq
  for (size_t i = 0; i < zero.state.size(); ++i)
    EXPECT_LE(max_relative_difference(zero.state[i], plain.state[i]), 1e-4);
  // 1/N of the state, within 5 % (pieces of each bucket differ by at most one element).
  const double share = static_cast<double>(zero.state_bytes) / static_cast<double>(plain.state_bytes);
  EXPECT_LE(share, 1.05 / comm().size()) << zero.state_bytes << " of " << plain.state_bytes << " bytes";
  EXPECT_GE(share, 0.95 / comm().size());
}

}  // namespace
}  // namespace dtrain
