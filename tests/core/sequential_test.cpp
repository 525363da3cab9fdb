#include <gtest/gtest.h>

#include "core/layers/layers.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

Sequential small_net() {
  Sequential net;
  net.emplace<Conv2d>(2, 3, 3, 1, 1).emplace<GELU>().emplace<Flatten>();
  net.emplace<Linear>(3 * 4 * 4, 8).emplace<LayerNorm>(8).emplace<Linear>(8, 3);
  return net;
}

TEST(Sequential, GradientsMatchFiniteDifferences) {
  Sequential net = small_net();
  ParameterArena arena;
  testing::build(net, arena);
  Generator g = testing::test_gen(1);
  testing::check_module_gradients(net, arena, Tensor::randn(Shape{2, 2, 4, 4}, 0, 1, g), testing::training_ctx);
}

TEST(Sequential, NamesParametersByChildIndexInRegistrationOrder) {
  Sequential net = small_net();
  ParameterArena arena;
  testing::build(net, arena);
  std::vector<std::string> names;
  for (const Parameter* p : net.parameters()) names.push_back(p->name);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias", "4.weight", "4.bias",
                                             "5.weight", "5.bias"}));
  EXPECT_EQ(net.output_shape(Shape{7, 2, 4, 4}), (Shape{7, 3}));
}

TEST(Sequential, BackwardBeforeForwardThrows) {
  Sequential net = small_net();
  ParameterArena arena;
  testing::build(net, arena);
  PassContext ctx;
  EXPECT_THROW(net.backward(Tensor::zeros(Shape{2, 3}), ctx), Error);
}

TEST(Sequential, ShapeErrorsNameTheFailingChild) {
  Sequential net = small_net();
  try {
    net.output_shape(Shape{1, 2, 5, 5});
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Linear(48->8): input has 75 features, expected 48");
  }
}

}  // namespace
}  // namespace dtrain
