// A whole training step of each registry model on the CPU and on CUDA from the same seed: the
// counter-based RNG gives both the same initial weights and dropout masks, so the loss, every
// gradient and the parameters after an SGD update must agree to rounding. Skips with the reason
// without CUDA or without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/loss.h"
#include "core/model.h"
#include "core/ops.h"
#include "tests/core/cuda_test_util.h"

namespace dtrain::test {
namespace {

#if !DTRAIN_HAVE_CUDA

TEST(CudaModelStep, SkippedWithoutCuda) {
  GTEST_SKIP() << "built without CUDA (DTRAIN_CUDA=OFF or no nvcc): there is no CUDA model step to compare";
}

#else

struct StepResult {
  float loss = 0;
  Tensor grads, values;  // on the host
};

ModelConfig config_of(const std::string& type) {
  ModelConfig c;
  c.type = type;
  c.num_classes = 10;
  c.input_shape = Shape{1, 28, 28};
  c.dropout = 0.1f;  // the masks come from the counter stream: the same on both devices
  if (type == "gpt") {
    c.n_layer = 2, c.n_head = 2, c.n_embd = 64, c.ctx = 32;
    c.num_classes = 256;
    c.input_shape = Shape{c.ctx};
  }
  return c;
}

StepResult one_step(const ModelConfig& config, Device device, const Tensor& x, const Tensor& y) {
  auto model = create_model(config);
  model->build(device, 11);
  Generator dropout(RngKey{11, 0, static_cast<uint32_t>(RngPurpose::dropout)});
  PassContext ctx;
  ctx.dropout_rng = &dropout;
  ctx.arena = &model->arena();
  ctx.input_grad = false;
  model->arena().zero_grad();
  const Tensor logits = model->forward(x.to(device), ctx);
  const int64_t rows = y.numel();
  const LossOutput loss =
      softmax_cross_entropy(logits.view(Shape{rows, config.num_classes}), y.to(device), 1.0f / rows);
  model->backward(loss.grad.view(logits.shape()), ctx);
  StepResult r{loss.mean(), model->arena().grads().to(Device::cpu()), Tensor()};
  ops::axpy(-0.1f, model->arena().grads(), model->arena().values());
  r.values = model->arena().values().to(Device::cpu());
  return r;
}

class CudaModelStep : public CpuVsCuda, public ::testing::WithParamInterface<const char*> {};

TEST_P(CudaModelStep, LossGradientsAndUpdateMatchTheCpu) {
  const ModelConfig config = config_of(GetParam());
  const int64_t batch = 8;
  Tensor x, y;
  if (config.type == "gpt") {
    std::vector<int64_t> ids(static_cast<size_t>(batch * config.ctx));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 37 + 11) % 256);
    x = Tensor::from_vector(ids, Shape{batch, config.ctx});
    for (auto& id : ids) id = (id + 1) % 256;
    y = Tensor::from_vector(ids, Shape{batch * config.ctx});
  } else {
    x = randn(Shape{batch, 1, 28, 28});
    std::vector<int64_t> labels(static_cast<size_t>(batch));
    for (int64_t i = 0; i < batch; ++i) labels[i] = (i * 3) % 10;
    y = Tensor::from_vector(labels, Shape{batch});
  }
  const StepResult cpu = one_step(config, Device::cpu(), x, y);
  const StepResult gpu = one_step(config, kGpu, x, y);
  EXPECT_NEAR(gpu.loss, cpu.loss, 1e-4 * std::fabs(cpu.loss)) << config.type << ": step 1 loss";
  expect_close(cpu.grads, gpu.grads, 1e-3f, config.type + " gradients");
  expect_close(cpu.values, gpu.values, 1e-4f, config.type + " parameters after the update");
}

INSTANTIATE_TEST_SUITE_P(Registry, CudaModelStep, ::testing::Values("mlp", "cnn", "gpt"));

#endif

}  // namespace
}  // namespace dtrain::test
