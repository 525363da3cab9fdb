// Pipelines: pipeline.json's checks name the field, tensors flow by name through the stages, and a
// stage on another server that cannot be reached is a 502 naming it.
#include "serve/pipeline.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace dtrain::serve {
namespace {

using nlohmann::json;

const std::vector<TensorInfo> kIn = {{"input", DType::f32, {-1, 2}}};
const std::vector<TensorInfo> kOut = {{"y", DType::f32, {-1, 2}}};

std::string parse_error(const std::string& text) {
  try {
    parse_pipeline(json::parse(text), "p.json", kIn, kOut);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Pipeline, ChecksTheStagesNamingTheField) {
  const std::string good =
      R"({"stages": [{"model": "a", "inputs": {"input": "input"}, "outputs": {"activation": "h"}},
                     {"model": "b", "version": 2, "url": "http://10.0.0.2:8000/", "inputs": {"input": "h"},
                      "outputs": {"out": "y"}}]})";
  const Pipeline p = parse_pipeline(json::parse(good), "p.json", kIn, kOut);
  ASSERT_EQ(p.stages.size(), 2u);
  EXPECT_EQ(p.stages[1].version, 2);
  EXPECT_EQ(p.stages[1].url, "http://10.0.0.2:8000");
  const std::pair<const char*, const char*> cases[] = {
      {R"({"stages": []})", "\"stages\" must be a non-empty array"},
      {R"({"stages": [{"inputs": {"input": "input"}, "outputs": {"o": "y"}}]})", "stages[0].model must be"},
      {R"({"stages": [{"model": "../x", "inputs": {"input": "input"}, "outputs": {"o": "y"}}]})", "not a plain"},
      {R"({"stages": [{"model": "a", "version": -1, "inputs": {"input": "input"}, "outputs": {"o": "y"}}]})",
       "stages[0].version"},
      {R"({"stages": [{"model": "a", "url": "ftp://x", "inputs": {"input": "input"}, "outputs": {"o": "y"}}]})",
       "stages[0].url"},
      {R"({"stages": [{"model": "a", "inputs": {"input": "nope"}, "outputs": {"o": "y"}}]})",
       "reads 'nope', which is neither"},
      {R"({"stages": [{"model": "a", "inputs": {"input": "input"}, "outputs": {"o": "input"}}]})",
       "writes 'input', which a pipeline input"},
      {R"({"stages": [{"model": "a", "inputs": {"input": "input"}, "outputs": {"o": "z"}}]})",
       "no stage writes the pipeline output 'y'"},
      {R"({"stages": [{"model": "a", "inputs": {}, "outputs": {"o": "y"}}]})", "stages[0].inputs must be a non-empty"},
      {R"({"stages": [{"model": "a", "inputs": {"input": 3}, "outputs": {"o": "y"}}]})", "must name a tensor"},
      {R"({"stages": [{"model": "a", "inputs": {"input": "input"}}]})", "needs \"inputs\" and \"outputs\""},
      {R"([1, 2])", "\"stages\" must be"},
  };
  for (const auto& [text, needle] : cases) {
    const std::string message = parse_error(text);
    EXPECT_NE(message.find(needle), std::string::npos) << text << " -> " << message;
    EXPECT_EQ(message.rfind("p.json", 0), 0u) << message;
  }
}

TEST(Pipeline, TensorsFlowByNameThroughTheStages) {
  const Pipeline p =
      parse_pipeline(json::parse(R"({"stages": [{"model": "double", "inputs": {"x": "input"}, "outputs": {"z": "h"}},
                                 {"model": "add", "inputs": {"a": "h", "b": "input"}, "outputs": {"z": "y"}}]})"),
                     "p.json", kIn, kOut);
  std::vector<std::string> ran;
  const LocalStageRunner local = [&](const PipelineStage& s, const NamedTensors& in) {
    ran.push_back(s.model);
    std::vector<float> v = in.begin()->second.to_vector<float>();
    if (s.model == "double") {
      for (float& x : v) x *= 2;
    } else {
      const std::vector<float> b = in.at("b").to_vector<float>(), a = in.at("a").to_vector<float>();
      for (size_t i = 0; i < v.size(); ++i) v[i] = a[i] + b[i];
    }
    return NamedTensors{{"z", Tensor::from_vector(v, Shape{1, 2})}};
  };
  std::vector<size_t> observed;
  const std::vector<Tensor> y =
      run_pipeline(p, kIn, {Tensor::from_vector<float>({1, 2}, Shape{1, 2})}, kOut, local, [&](size_t k, double s) {
        observed.push_back(k);
        EXPECT_GE(s, 0);
      });
  EXPECT_EQ(ran, (std::vector<std::string>{"double", "add"}));
  EXPECT_EQ(observed, (std::vector<size_t>{0, 1}));
  ASSERT_EQ(y.size(), 1u);
  EXPECT_EQ(y[0].to_vector<float>(), (std::vector<float>{3, 6}));
  // A stage that does not return an output the pipeline reads: a 502 naming it.
  const LocalStageRunner wrong = [](const PipelineStage&, const NamedTensors&) {
    return NamedTensors{{"other", Tensor::zeros(Shape{1, 2}, DType::f32)}};
  };
  try {
    run_pipeline(p, kIn, {Tensor::zeros(Shape{1, 2}, DType::f32)}, kOut, wrong);
    ADD_FAILURE() << "no error";
  } catch (const StageError& e) {
    EXPECT_EQ(e.status(), 502);
    EXPECT_NE(std::string(e.what()).find("stage 1 (model 'double') has no output 'z'"), std::string::npos) << e.what();
  }
}

TEST(Pipeline, AStageOnAServerThatCannotBeReachedIsA502NamingIt) {
  PipelineStage s;
  s.model = "m";
  s.url = "http://127.0.0.1:1";  // nothing listens on port 1
  try {
    call_remote_stage(s, {{"input", Tensor::zeros(Shape{1, 2}, DType::f32)}});
    ADD_FAILURE() << "no error";
  } catch (const StageError& e) {
    EXPECT_EQ(e.status(), 502);
    EXPECT_NE(std::string(e.what()).find("stage model 'm' at http://127.0.0.1:1 cannot be reached"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace dtrain::serve
