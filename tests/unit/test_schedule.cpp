// The learning-rate schedules against their formulas, evaluated by hand at chosen steps.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "aetrain/schedule.hpp"

namespace aetrain {
namespace {

TEST(Schedule, WarmupRisesLinearlyThenConstantHolds) {
  ScheduleConfig s;
  s.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 1, 0, 100), 0.025);
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 3, 0, 100), 0.075);
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 4, 0, 100), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 5, 0, 100), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 100, 9, 100), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr(ScheduleConfig{}, 0.1, 1, 0, 100), 0.1);  // no warmup
}

TEST(Schedule, CosineRunsFromTheRateToMinLrOverTheStepsAfterWarmup) {
  ScheduleConfig s;
  s.kind = LrSchedule::cosine;
  s.warmup_steps = 10;
  s.min_lr = 0.001;
  const int64_t total = 110;                                  // 100 cosine steps
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 10, 0, total), 0.1);  // the warmup's last step
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 60, 0, total), 0.001 + 0.099 * 0.5);  // half way
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 110, 0, total), 0.001);               // the last step
  const double quarter = 0.001 + 0.099 * (1 + std::cos(std::numbers::pi * 0.25)) / 2;
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 35, 0, total), quarter);
  s.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 1, 0, 100),
                   0.001 + 0.099 * (1 + std::cos(std::numbers::pi * 0.01)) / 2);
}

TEST(Schedule, StepMultipliesByGammaEveryStepEpochs) {
  ScheduleConfig s;
  s.kind = LrSchedule::step;
  s.step_epochs = 3;
  s.gamma = 0.5;
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 1, 0, 1000), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 50, 2, 1000), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 51, 3, 1000), 0.05);
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 200, 7, 1000), 0.025);
  s.warmup_steps = 5;
  EXPECT_DOUBLE_EQ(scheduled_lr(s, 0.1, 2, 0, 1000), 0.04);
}

TEST(Schedule, NamesRoundTrip) {
  for (LrSchedule k : {LrSchedule::constant, LrSchedule::cosine, LrSchedule::step})
    EXPECT_EQ(from_name<LrSchedule>(name_of(k)), k);
  EXPECT_THROW(from_name<LrSchedule>("linear"), std::invalid_argument);
}

}  // namespace
}  // namespace aetrain
