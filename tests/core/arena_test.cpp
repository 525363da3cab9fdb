#include <gtest/gtest.h>

#include "core/model.h"
#include "core/ops.h"

namespace dtrain {
namespace {

std::unique_ptr<Model> tiny_mlp() {
  ModelConfig c;
  c.input_shape = Shape{6};
  c.hidden = {5, 4};
  c.num_classes = 3;
  auto m = create_model(c);
  m->build(Device::cpu(), 1);
  return m;
}

TEST(ParameterArena, LaysOutParametersInReverseRegistrationOrder) {
  auto m = tiny_mlp();
  const auto& ps = m->parameters();
  std::vector<std::string> names;
  for (const Parameter* p : ps) names.push_back(p->name);
  EXPECT_EQ(names, (std::vector<std::string>{"1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"}));
  int64_t offset = 0;
  for (auto it = ps.rbegin(); it != ps.rend(); ++it) {
    EXPECT_EQ((*it)->offset, offset) << (*it)->name;
    EXPECT_EQ((*it)->value.raw_data(), m->arena().values().data<float>() + offset) << (*it)->name;
    EXPECT_EQ((*it)->grad.raw_data(), m->arena().grads().data<float>() + offset) << (*it)->name;
    offset += (*it)->shape.numel();
  }
  EXPECT_EQ(offset, m->arena().numel());
}

TEST(ParameterArena, TheLastRegisteredParamsFormAZeroCopyGradientBucket) {
  auto m = tiny_mlp();
  const auto& ps = m->parameters();
  const int k = 3;  // 3.bias, 5.weight, 5.bias
  int64_t count = 0;
  for (int i = 0; i < k; ++i) count += ps[ps.size() - 1 - i]->shape.numel();
  Tensor bucket = m->arena().grads().flat_range(0, count);
  EXPECT_EQ(bucket.storage(), m->arena().grads().storage());
  bucket.fill(3.0f);
  for (int i = 0; i < static_cast<int>(ps.size()); ++i) {
    const float expected = i >= static_cast<int>(ps.size()) - k ? 3.0f : 0.0f;
    for (float v : ps[i]->grad.to_vector<float>()) ASSERT_EQ(v, expected) << ps[i]->name;
  }
  // And the other way: a layer's write to Parameter::grad shows in the bucket.
  ps.back()->grad.fill(-1.0f);
  EXPECT_EQ(bucket.to_vector<float>()[0], -1.0f);
}

TEST(ParameterArena, GradReadyFiresInReverseRegistrationOrderDuringBackward) {
  auto m = tiny_mlp();
  std::vector<std::string> fired;
  m->arena().set_grad_ready_hook([&](const Parameter& p) { fired.push_back(p.name); });
  PassContext ctx;
  ctx.arena = &m->arena();
  Generator g(RngKey{1, 0, static_cast<uint32_t>(RngPurpose::test)});
  Tensor y = m->forward(Tensor::randn(Shape{2, 6}, 0, 1, g), ctx);
  m->backward(Tensor::full(y.shape(), 1.0f), ctx);
  std::vector<std::string> expected;
  for (auto it = m->parameters().rbegin(); it != m->parameters().rend(); ++it) expected.push_back((*it)->name);
  EXPECT_EQ(fired, expected);
}

}  // namespace
}  // namespace dtrain
