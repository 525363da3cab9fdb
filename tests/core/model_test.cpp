#include <gtest/gtest.h>

#include "core/loss.h"
#include "core/model.h"
#include "core/ops.h"

namespace dtrain {
namespace {

// Gaussian blobs: class c centred at 4 * e_c (well separated), unit noise.
struct Blobs {
  Tensor x, y;
};
Blobs make_blobs(int64_t n, int64_t features, int64_t classes, Generator& g) {
  std::vector<float> x = Tensor::randn(Shape{n, features}, 0, 1, g).to_vector<float>();
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<int64_t>(g.below(static_cast<uint64_t>(classes)));
    x[i * features + y[i]] += 4.0f;
  }
  return {Tensor::from_vector(x, Shape{n, features}), Tensor::from_vector(y, Shape{n})};
}

float accuracy(Model& m, const Blobs& data) {
  PassContext ctx;
  ctx.training = false;
  auto pred = ops::argmax_rows(m.forward(data.x, ctx)).to_vector<int64_t>();
  auto truth = data.y.to_vector<int64_t>();
  int64_t right = 0;
  for (size_t i = 0; i < pred.size(); ++i) right += pred[i] == truth[i];
  return static_cast<float>(right) / static_cast<float>(pred.size());
}

TEST(Model, MlpLearnsSeparableBlobsWithPlainSgd) {
  ModelConfig c;
  c.input_shape = Shape{8};
  c.hidden = {16, 16};
  c.num_classes = 4;
  auto model = create_model(c);
  model->build(Device::cpu(), 7);
  Generator g(RngKey{3, 0, static_cast<uint32_t>(RngPurpose::data_synth)});
  const Blobs train = make_blobs(2048, 8, 4, g), test = make_blobs(512, 8, 4, g);
  Generator dropout(RngKey{3, 0, static_cast<uint32_t>(RngPurpose::dropout)});
  const int64_t batch = 64;
  const float lr = 0.1f;
  float first_loss = 0, last_loss = 0;
  for (int step = 0; step < 300; ++step) {
    const int64_t start = (step * batch) % train.x.dim(0);
    PassContext ctx;
    ctx.dropout_rng = &dropout;
    ctx.arena = &model->arena();
    model->arena().zero_grad();
    Tensor logits = model->forward(train.x.slice(start, start + batch), ctx);
    LossOutput loss = softmax_cross_entropy(logits, train.y.slice(start, start + batch), 1.0f / batch);
    model->backward(loss.grad, ctx);
    ops::axpy(-lr, model->arena().grads(), model->arena().values());  // SGD: param -= lr * grad
    (step == 0 ? first_loss : last_loss) = loss.mean();
  }
  EXPECT_LT(last_loss, first_loss);
  EXPECT_GT(accuracy(*model, test), 0.95f);
}

TEST(Model, CnnRunsForwardAndBackwardOnMnistShapes) {
  ModelConfig c;
  c.type = "cnn";
  auto model = create_model(c);
  model->build(Device::cpu(), 1);
  EXPECT_EQ(model->output_shape(3), (Shape{3, 10}));
  EXPECT_EQ(model->parameters().size(), 8u);
  Generator g(RngKey{1, 0, static_cast<uint32_t>(RngPurpose::test)});
  PassContext ctx;
  const Tensor x = Tensor::randn(Shape{3, 1, 28, 28}, 0, 1, g);
  Tensor logits = model->forward(x, ctx);
  LossOutput loss = softmax_cross_entropy(logits, Tensor::from_vector<int64_t>({1, 2, 3}, Shape{3}), 1.0f / 3);
  Tensor dx = model->backward(loss.grad, ctx);
  EXPECT_EQ(dx.shape(), (Shape{3, 1, 28, 28}));
  EXPECT_GT(ops::sum_squares(model->arena().grads()), 0.0f);

  // Without the input gradient (as the trainer runs): the same parameter gradients, bit for bit.
  const std::vector<float> with_dx = model->arena().grads().to_vector<float>();
  model->arena().zero_grad();
  ctx.input_grad = false;
  model->forward(x, ctx);
  EXPECT_FALSE(model->backward(loss.grad, ctx).defined());
  EXPECT_FALSE(ctx.input_grad);  // Sequential hands the flag back as it found it
  EXPECT_EQ(model->arena().grads().to_vector<float>(), with_dx);
}

// The mlp starts with a Flatten: without the input gradient its first Linear skips dx and the
// Flatten's backward is not run; the parameter gradients are the same bit for bit.
TEST(Model, MlpWithoutInputGradientHasTheSameParameterGradients) {
  ModelConfig c;
  c.type = "mlp";
  auto model = create_model(c);
  model->build(Device::cpu(), 1);
  Generator g(RngKey{2, 0, static_cast<uint32_t>(RngPurpose::test)});
  const Tensor x = Tensor::randn(Shape{5, 1, 28, 28}, 0, 1, g);
  const Tensor labels = Tensor::from_vector<int64_t>({0, 1, 2, 3, 4}, Shape{5});
  std::vector<std::vector<float>> grads;
  for (bool input_grad : {true, false}) {
    PassContext ctx;
    ctx.input_grad = input_grad;
    model->arena().zero_grad();
    const LossOutput loss = softmax_cross_entropy(model->forward(x, ctx), labels, 1.0f / 5);
    const Tensor dx = model->backward(loss.grad, ctx);
    EXPECT_EQ(dx.defined(), input_grad);
    grads.push_back(model->arena().grads().to_vector<float>());
  }
  EXPECT_EQ(grads[0], grads[1]);
}

TEST(Model, UnknownTypeNamesTheRegisteredOnes) {
  ModelConfig c;
  c.type = "resnet";
  try {
    create_model(c);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'resnet'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("mlp"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dtrain
