#include <gtest/gtest.h>

#include "core/error.h"
#include "optim/schedule.h"

namespace dtrain {
namespace {

TEST(Schedule, WarmupIsLinearThenConstant) {
  ScheduleConfig c;
  c.warmup_steps = 4;
  EXPECT_FLOAT_EQ(learning_rate(c, 1.0f, 0), 0.25f);
  EXPECT_FLOAT_EQ(learning_rate(c, 1.0f, 3), 1.0f);
  EXPECT_FLOAT_EQ(learning_rate(c, 1.0f, 100), 1.0f);
}

TEST(Schedule, StepDecaysEveryStepSize) {
  ScheduleConfig c;
  c.type = "step";
  c.step_size = 10;
  c.gamma = 0.5f;
  EXPECT_FLOAT_EQ(learning_rate(c, 1.0f, 9), 1.0f);
  EXPECT_FLOAT_EQ(learning_rate(c, 1.0f, 10), 0.5f);
  EXPECT_FLOAT_EQ(learning_rate(c, 1.0f, 25), 0.25f);
}

TEST(Schedule, CosineGoesFromBaseToMinAfterWarmup) {
  ScheduleConfig c;
  c.type = "cosine";
  c.warmup_steps = 10;
  c.total_steps = 110;
  c.min_lr = 0.1f;
  EXPECT_FLOAT_EQ(learning_rate(c, 1.0f, 10), 1.0f);
  EXPECT_NEAR(learning_rate(c, 1.0f, 60), 0.55f, 1e-6);
  EXPECT_NEAR(learning_rate(c, 1.0f, 110), 0.1f, 1e-6);
  EXPECT_NEAR(learning_rate(c, 1.0f, 500), 0.1f, 1e-6);
}

TEST(Schedule, BadConfigNamesTheKey) {
  ScheduleConfig c;
  c.type = "cosine";
  c.total_steps = 0;
  EXPECT_THROW(learning_rate(c, 1.0f, 0), Error);
  c.type = "linear";
  try {
    learning_rate(c, 1.0f, 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("optim.schedule"), std::string::npos);
  }
}

}  // namespace
}  // namespace dtrain
