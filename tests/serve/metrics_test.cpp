// Prometheus text: counters by model/version/code, cumulative histogram buckets, gauges.
#include "serve/metrics.h"

#include <gtest/gtest.h>

namespace dtrain::serve {
namespace {

TEST(ServeMetrics, RendersCountersHistogramsAndGauges) {
  ServeMetrics m;
  m.count_request("fm", 2, 200);
  m.count_request("fm", 2, 200);
  m.count_request("fm", 2, 400);
  m.observe_batch("fm", 2, 3, 0.002);
  m.observe_batch("fm", 2, 40, 0.02);
  m.observe_request("fm", 2, 0.0005, 0.003);
  const std::string text = m.render({VersionGauges{"fm", 2, 5}});
  EXPECT_NE(text.find("dtrain_serve_requests_total{model=\"fm\",version=\"2\",code=\"200\"} 2\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("dtrain_serve_requests_total{model=\"fm\",version=\"2\",code=\"400\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("dtrain_serve_batch_size_bucket{model=\"fm\",version=\"2\",le=\"2\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("dtrain_serve_batch_size_bucket{model=\"fm\",version=\"2\",le=\"4\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("dtrain_serve_batch_size_bucket{model=\"fm\",version=\"2\",le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("dtrain_serve_batch_size_sum{model=\"fm\",version=\"2\"} 43\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE dtrain_serve_compute_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("dtrain_serve_queue_seconds_count{model=\"fm\",version=\"2\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("dtrain_serve_queue_depth{model=\"fm\",version=\"2\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("dtrain_serve_models_loaded 1\n"), std::string::npos);
}

TEST(ServeMetrics, RendersTheLanguageModelFamiliesForLanguageModelsOnly) {
  ServeMetrics m;
  m.count_generated("gpt", 1, 5);
  m.count_generated("gpt", 1, 3);
  m.observe_first_token("gpt", 1, 0.02);
  m.observe_prefill("gpt", 1, 0.01);
  m.observe_decode_step("gpt", 1, 4, 0.003);
  const std::string text = m.render({VersionGauges{"gpt", 1, 2, 4}, VersionGauges{"fm", 2, 0}});
  EXPECT_NE(text.find("dtrain_serve_generated_tokens_total{model=\"gpt\",version=\"1\"} 8\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("dtrain_serve_time_to_first_token_seconds_count{model=\"gpt\",version=\"1\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("dtrain_serve_decode_batch_size_sum{model=\"gpt\",version=\"1\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("dtrain_serve_prefill_seconds_count{model=\"gpt\",version=\"1\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("dtrain_serve_active_sequences{model=\"gpt\",version=\"1\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("dtrain_serve_queue_depth{model=\"gpt\",version=\"1\"} 2\n"), std::string::npos);
  EXPECT_EQ(text.find("dtrain_serve_active_sequences{model=\"fm\""), std::string::npos);
  EXPECT_EQ(text.find("dtrain_serve_decode_step_seconds_count{model=\"fm\""), std::string::npos);
}

TEST(ServeMetrics, EscapesLabelValues) {
  EXPECT_EQ(version_labels("a\"b\\c", 1), "model=\"a\\\"b\\\\c\",version=\"1\"");
}

}  // namespace
}  // namespace dtrain::serve
