// KServe V2 request parsing and validation: every 400 names its culprit.
#include "serve/infer_request.h"

#include <gtest/gtest.h>

#include <limits>

#include "core/error.h"

namespace dtrain::serve {
namespace {

const std::vector<TensorInfo> kInputs = {{"input", DType::u8, {-1, 2, 2}}};
const std::vector<TensorInfo> kF32Inputs = {{"x", DType::f32, {-1, 3}}};
const std::vector<TensorInfo> kOutputs = {{"probabilities", DType::f32, {-1, 4}}, {"class", DType::i64, {-1}}};

std::string parse_error(const std::string& body, const std::vector<TensorInfo>& inputs = kInputs,
                        int64_t max_batch = 4) {
  try {
    parse_infer_request(body, inputs, kOutputs, max_batch);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Expects parse_infer_request to throw a message containing `needle`.
void expect_error(const std::string& needle, const std::string& body, const std::vector<TensorInfo>& inputs = kInputs,
                  int64_t max_batch = 4) {
  const std::string message = parse_error(body, inputs, max_batch);
  EXPECT_NE(message.find(needle), std::string::npos) << "expected '" << needle << "' in: " << message;
}

TEST(InferRequest, ParsesFlatAndNestedDataAlike) {
  const InferRequest flat = parse_infer_request(
      R"({"id":"a1","inputs":[{"name":"input","shape":[2,2,2],"datatype":"UINT8","data":[0,1,2,3,4,5,6,255]}]})",
      kInputs, kOutputs, 4);
  const InferRequest nested = parse_infer_request(
      R"({"inputs":[{"name":"input","shape":[2,2,2],"datatype":"UINT8","data":[[[0,1],[2,3]],[[4,5],[6,255]]]}]})",
      kInputs, kOutputs, 4);
  ASSERT_EQ(flat.rows, 2);
  EXPECT_EQ(flat.id.value(), "a1");
  EXPECT_FALSE(nested.id.has_value());
  EXPECT_EQ(flat.inputs[0].to_vector<uint8_t>(), nested.inputs[0].to_vector<uint8_t>());
  EXPECT_EQ(flat.inputs[0].to_vector<uint8_t>().back(), 255);
  EXPECT_EQ(flat.output_indices, (std::vector<size_t>{0, 1}));
}

TEST(InferRequest, SelectsRequestedOutputs) {
  const InferRequest r = parse_infer_request(
      R"({"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[0.5,-1,2e3]}],"outputs":[{"name":"class"}]})",
      kF32Inputs, kOutputs, 4);
  EXPECT_EQ(r.output_indices, (std::vector<size_t>{1}));
  EXPECT_EQ(r.inputs[0].to_vector<float>(), (std::vector<float>{0.5f, -1.0f, 2000.0f}));
}

TEST(InferRequest, RejectsMalformedJson) {
  EXPECT_EQ(parse_error("{\"inputs\": [").rfind("malformed JSON", 0), 0u) << parse_error("{\"inputs\": [");
  expect_error("must be a JSON object", "[1,2]");
  EXPECT_LT(parse_error("{\"id\": \"" + std::string(100000, 'x')).size(), 400u)
      << "the error quotes all of a long body";
  expect_error("nested deeper than 32 levels",
               R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":)" + std::string(100, '[') +
                   "1" + std::string(100, ']') + "}]}");
  expect_error("'inputs' must be a non-empty array", "{}");
}

TEST(InferRequest, RejectsUnknownAndMissingInputsNamingThem) {
  expect_error("unknown input 'pixels'",
               R"({"inputs":[{"name":"pixels","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3,4]}]})");
  expect_error("input 'input' has no 'data'", R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8"}]})");
  const std::string twice = R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3,4]},)"
                            R"({"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3,4]}]})";
  expect_error("input 'input' is given twice", twice);
  expect_error(
      "unknown output 'logits'",
      R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3,4]}],"outputs":[{"name":"logits"}]})");
}

TEST(InferRequest, RejectsWrongDatatypeAndShapes) {
  expect_error("input 'input' has datatype FP32, the model takes UINT8",
               R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"FP32","data":[1,2,3,4]}]})");
  expect_error("the model takes [-1, 2, 2]",
               R"({"inputs":[{"name":"input","shape":[1,4],"datatype":"UINT8","data":[1,2,3,4]}]})");
  expect_error("dim 2 must be 2",
               R"({"inputs":[{"name":"input","shape":[1,2,3],"datatype":"UINT8","data":[1,2,3,4,5,6]}]})");
  expect_error("data has 3 values, shape [1,2,2] needs 4",
               R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3]}]})");
  expect_error("data has more than 4 values",
               R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3,4,5]}]})");
  expect_error("must hold non-negative integers",
               R"({"inputs":[{"name":"input","shape":[-1,2,2],"datatype":"UINT8","data":[]}]})");
  expect_error("must be at least 1", R"({"inputs":[{"name":"input","shape":[0,2,2],"datatype":"UINT8","data":[]}]})");
}

TEST(InferRequest, RejectsBatchOverTheMaximum) {
  std::string data = "[";
  for (int i = 0; i < 20; ++i) data += i ? ",0" : "0";
  data += "]";
  const std::string body = R"({"inputs":[{"name":"input","shape":[5,2,2],"datatype":"UINT8","data":)" + data + "}]}";
  expect_error("a batch of 5 rows is over the maximum batch size 4", body);
}

TEST(InferRequest, RejectsValuesOutsideTheDatatype) {
  expect_error("data[3] = 256 is not a UINT8 value",
               R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3,256]}]})");
  expect_error("data[1] = 2.5 is not a UINT8 value",
               R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2.5,3,4]}]})");
  expect_error("input 'x': data[1] is string, expected a number",
               R"({"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,"a",3]}]})", kF32Inputs);
  expect_error("input 'x': data[1] is not a finite FP32 value",
               R"({"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,1e39,3]}]})", kF32Inputs);
  expect_error("malformed JSON", R"({"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,NaN,3]}]})",
               kF32Inputs);
}

TEST(InferRequest, ResponseHoldsIdNamesShapesAndData) {
  InferRequest r;
  r.id = "q7";
  r.rows = 2;
  r.output_indices = {1};
  const std::vector<Tensor> outs = {
      Tensor::from_vector<float>({0.f, 1.f, 0.f, 0.f, 0.25f, 0.75f, 0.f, 0.f}, Shape{2, 4}),
      Tensor::from_vector<int64_t>({1, 1}, Shape{2})};
  EXPECT_EQ(
      infer_response("m", 3, r, kOutputs, outs).body,
      R"({"id":"q7","model_name":"m","model_version":"3","outputs":[{"data":[1,1],"datatype":"INT64","name":"class","shape":[2]}]})");
  EXPECT_EQ(error_json("bad \"x\""), R"({"error":"bad \"x\""})");
}

// The binary tensor data extension: a JSON header of `header` bytes, then raw tensors.
std::string binary_body(const std::string& header, const std::string& bytes) { return header + bytes; }

std::string binary_error(const std::string& header, const std::string& bytes, const std::string& length,
                         const std::vector<TensorInfo>& inputs = kInputs) {
  try {
    parse_infer_request(binary_body(header, bytes), inputs, kOutputs, 4, length);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(InferRequest, ReadsBinaryInputsAfterTheJsonHeader) {
  const std::string header =
      R"({"inputs":[{"name":"input","shape":[2,2,2],"datatype":"UINT8","parameters":{"binary_data_size":8}}],)"
      R"("parameters":{"binary_data_output":true,"timeout":1500}})";
  const std::string bytes("\x00\x01\x02\x03\xfc\xfd\xfe\xff", 8);
  const InferRequest r =
      parse_infer_request(binary_body(header, bytes), kInputs, kOutputs, 4, std::to_string(header.size()));
  EXPECT_EQ(r.rows, 2);
  EXPECT_EQ(r.inputs[0].to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 2, 3, 252, 253, 254, 255}));
  EXPECT_EQ(r.timeout_us, 1500);
  EXPECT_EQ(r.binary_outputs, (std::vector<bool>{true, true}));
  // The same input as JSON gives the same tensor.
  const InferRequest j = parse_infer_request(
      R"({"inputs":[{"name":"input","shape":[2,2,2],"datatype":"UINT8","data":[0,1,2,3,252,253,254,255]}]})", kInputs,
      kOutputs, 4);
  EXPECT_EQ(j.inputs[0].to_vector<uint8_t>(), r.inputs[0].to_vector<uint8_t>());
  EXPECT_EQ(j.binary_outputs, (std::vector<bool>{false, false}));
}

TEST(InferRequest, RejectsBinaryBodiesThatDoNotAddUp) {
  const std::string header =
      R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","parameters":{"binary_data_size":4}}]})";
  const std::string n = std::to_string(header.size());
  EXPECT_EQ(binary_error(header, "abcd", n), "(no error)");
  EXPECT_NE(binary_error(header, "abc", n).find("runs past the 3 bytes"), std::string::npos);
  EXPECT_NE(binary_error(header, "abcde", n).find("5 bytes of binary data after the JSON"), std::string::npos);
  EXPECT_NE(binary_error(header, "abcd", "x1").find("Inference-Header-Content-Length header 'x1'"), std::string::npos);
  EXPECT_NE(binary_error(header, "abcd", "99999").find("does not fit the body"), std::string::npos);
  EXPECT_NE(binary_error(header, "abcd", std::to_string(header.size() - 1)).find("malformed JSON header"),
            std::string::npos);
  const std::string wrong =
      R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","parameters":{"binary_data_size":3}}]})";
  EXPECT_NE(
      binary_error(wrong, "abc", std::to_string(wrong.size())).find("does not match shape [1, 2, 2] x UINT8 = 4 bytes"),
      std::string::npos);
  const std::string both =
      R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3,4],"parameters":{"binary_data_size":4}}]})";
  EXPECT_NE(binary_error(both, "abcd", std::to_string(both.size())).find("both 'data' and"), std::string::npos);
  // binary_data_size without the header: the whole body is JSON.
  expect_error("no Inference-Header-Content-Length header", header);
  const std::string negative =
      R"({"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","parameters":{"binary_data_size":-4}}]})";
  EXPECT_NE(binary_error(negative, "", std::to_string(negative.size())).find("non-negative integer"),
            std::string::npos);
}

TEST(InferRequest, ChecksBinaryFp32ValuesAsJsonDoes) {
  const std::string header =
      R"({"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":12}}]})";
  float v[3] = {1.f, std::numeric_limits<float>::quiet_NaN(), 2.f};
  const std::string bytes(reinterpret_cast<const char*>(v), sizeof v);
  EXPECT_NE(
      binary_error(header, bytes, std::to_string(header.size()), kF32Inputs).find("binary value [1] is not a finite"),
      std::string::npos);
}

TEST(InferRequest, RejectsBadParameters) {
  expect_error(
      "parameters.timeout must be a non-negative integer",
      R"({"parameters":{"timeout":-1},"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3,4]}]})");
  expect_error(
      "parameters.binary_data_output must be true or false",
      R"({"parameters":{"binary_data_output":1},"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3,4]}]})");
  expect_error(
      "output 'class': parameters.binary_data must be true or false",
      R"({"outputs":[{"name":"class","parameters":{"binary_data":"yes"}}],"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3,4]}]})");
  expect_error("'parameters' must be an object",
               R"({"parameters":[],"inputs":[{"name":"input","shape":[1,2,2],"datatype":"UINT8","data":[1,2,3,4]}]})");
}

TEST(InferRequest, WritesBinaryOutputsAfterTheJson) {
  InferRequest r;
  r.output_indices = {0, 1};
  r.binary_outputs = {false, true};
  const std::vector<Tensor> outs = {Tensor::from_vector<float>({0.5f, 0.5f, 0.f, 0.f}, Shape{1, 4}),
                                    Tensor::from_vector<int64_t>({258}, Shape{1})};
  const InferResponse a = infer_response("m", 1, r, kOutputs, outs);
  const std::string json =
      R"({"model_name":"m","model_version":"1","outputs":[{"data":[0.5,0.5,0.0,0.0],"datatype":"FP32","name":"probabilities","shape":[1,4]},)"
      R"({"datatype":"INT64","name":"class","parameters":{"binary_data_size":8},"shape":[1]}]})";
  ASSERT_EQ(a.json_length, json.size());
  EXPECT_EQ(a.body.substr(0, a.json_length), json);
  EXPECT_EQ(a.body.substr(a.json_length), std::string("\x02\x01\0\0\0\0\0\0", 8));
}

}  // namespace
}  // namespace dtrain::serve
