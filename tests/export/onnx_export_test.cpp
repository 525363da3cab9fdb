// export/onnx_export: every layer type round-trips through export and dtrain's ONNX engine;
// the checker and shape inference catch broken graphs; unsupported layers and options are named.
#include "export/onnx_export.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cstdlib>
#include <cstring>
#include <map>

#include "inference/onnx_engine.h"
#include "tests/export/onnx_test_models.h"

namespace dtrain {
namespace {

using test::make_test_model;

struct RoundTripCase {
  std::string input_dtype;
  double x_scale, x_shift;
};

void expect_matches_reference(Model& model, const OnnxModel& engine, const Tensor& client_input,
                              const Tensor& model_input, const std::string& what) {
  const test::Reference want = test::reference_outputs(model, model_input);
  const std::vector<Tensor> got = engine.run({client_input});
  ASSERT_EQ(got.size(), 2u) << what;
  const std::vector<float> probs = got[0].to_vector<float>();
  const std::vector<int64_t> cls = got[1].to_vector<int64_t>();
  ASSERT_EQ(probs.size(), want.probabilities.size()) << what;
  ASSERT_EQ(cls, want.classes) << what;
  float max_diff = 0;
  for (size_t i = 0; i < probs.size(); ++i) max_diff = std::max(max_diff, std::fabs(probs[i] - want.probabilities[i]));
  EXPECT_LE(max_diff, 1e-5f) << what;
}

TEST(OnnxExport, EveryImageLayerRoundTripsThroughTheEngineForF32AndU8Inputs) {
  auto model = make_test_model(test::image_test_config(), 11);
  Generator g(RngKey{5, 0, static_cast<uint32_t>(RngPurpose::test)});
  for (const RoundTripCase& c :
       {RoundTripCase{"f32", 1.0, 0.0}, RoundTripCase{"f32", 2.5, -0.25}, RoundTripCase{"u8", 1.0 / 255, -0.5}}) {
    ExportOptions opt;
    opt.input_dtype = c.input_dtype;
    opt.x_scale = c.x_scale;
    opt.x_shift = c.x_shift;
    const ExportedModel exported = export_onnx(*model, opt);
    const OnnxModel engine = OnnxModel::from_bytes(exported.bytes());
    EXPECT_EQ(engine.inputs(), exported.inputs);
    EXPECT_EQ(engine.outputs(), exported.outputs);
    for (int64_t batch : {1, 37}) {
      const Shape shape = test::batch_shape(model->config(), batch);
      const std::string what =
          c.input_dtype + " scale " + std::to_string(c.x_scale) + " batch " + std::to_string(batch);
      if (c.input_dtype == "u8") {
        const Tensor raw = test::random_u8(shape, g);
        expect_matches_reference(
            *model, engine, raw,
            ops::to_dtype(raw, DType::f32, static_cast<float>(c.x_scale), static_cast<float>(c.x_shift)), what);
      } else {
        const Tensor raw = Tensor::randn(shape, 0.0f, 1.0f, g);
        Tensor seen = raw.clone();
        ops::scale(seen, static_cast<float>(c.x_scale));
        seen = ops::add(seen, Tensor::full(shape, static_cast<float>(c.x_shift)));
        expect_matches_reference(*model, engine, raw, seen, what);
      }
    }
  }
}

// The built-in cnn at Fashion-MNIST size: its Conv nodes (with the fused Relu and MaxPool) run
// several sample groups per batch, the last one short, with the direct convolution where the CPU
// has it and with im2col + GEMM (DTRAIN_DIRECT_CONV=0).
TEST(OnnxExport, CnnAtFullSizeRoundTripsThroughTheEngine) {
  ModelConfig c;
  c.type = "cnn";
  auto model = create_model(c);
  model->build(Device::cpu(), 4);
  const std::string bytes = export_onnx(*model, ExportOptions{}).bytes();
  const OnnxModel engine = OnnxModel::from_bytes(bytes);
  ::setenv("DTRAIN_DIRECT_CONV", "0", 1);  // im2col + GEMM for every Conv, whatever the CPU
  const OnnxModel gemm_engine = OnnxModel::from_bytes(bytes);
  ::unsetenv("DTRAIN_DIRECT_CONV");
  Generator g(RngKey{6, 0, static_cast<uint32_t>(RngPurpose::test)});
  for (int64_t batch : {1, 37}) {
    const Tensor x = Tensor::randn(test::batch_shape(c, batch), 0.0f, 1.0f, g);
    expect_matches_reference(*model, engine, x, x, "cnn batch " + std::to_string(batch));
    expect_matches_reference(*model, gemm_engine, x, x, "cnn batch " + std::to_string(batch) + ", no direct Conv");
  }
}

TEST(OnnxExport, EmbeddingModelTakesInt64IdsAndRoundTrips) {
  auto model = make_test_model(test::tokens_test_config(), 12);
  const ExportedModel exported = export_onnx(*model, ExportOptions{});
  ASSERT_EQ(exported.inputs.size(), 1u);
  EXPECT_EQ(exported.inputs[0].dtype, DType::i64);
  EXPECT_EQ(exported.inputs[0].shape, (std::vector<int64_t>{-1, 5}));
  const OnnxModel engine = OnnxModel::from_bytes(exported.bytes());
  Generator g(RngKey{6, 0, static_cast<uint32_t>(RngPurpose::test)});
  for (int64_t batch : {1, 37}) {
    const Tensor ids = test::random_ids(test::batch_shape(model->config(), batch), 20, g);
    expect_matches_reference(*model, engine, ids, ids, "ids batch " + std::to_string(batch));
  }
}

TEST(OnnxExport, DeclaresDynamicBatchAndClientFacingOutputs) {
  ModelConfig c;  // the registry's mlp
  auto model = create_model(c);
  model->build(Device::cpu(), 1);
  ExportOptions opt;
  opt.input_dtype = "u8";
  opt.metadata = {{"step", "1234"}, {"test_accuracy", "0.91"}, {"quantize", "overridden"}};
  const ExportedModel e = export_onnx(*model, opt);
  EXPECT_EQ(e.inputs, (std::vector<TensorInfo>{{"input", DType::u8, {-1, 1, 28, 28}}}));
  EXPECT_EQ(e.outputs, (std::vector<TensorInfo>{{"probabilities", DType::f32, {-1, 10}}, {"class", DType::i64, {-1}}}));
  onnx::ModelProto proto;
  ASSERT_TRUE(proto.ParseFromString(e.bytes()));
  EXPECT_EQ(proto.opset_import(0).version(), 17);
  EXPECT_EQ(proto.graph().input(0).type().tensor_type().shape().dim(0).dim_param(), "N");
  // Large weights are spliced in after the skeleton: each appears once, whole, with its values.
  EXPECT_EQ(static_cast<int64_t>(e.bytes().size()), e.size());
  int found = 0;
  for (const auto& t : proto.graph().initializer()) {
    if (t.name() != "1.weight") continue;
    ++found;
    const std::vector<float> want = model->arena().find("1.weight").value.to_vector<float>();
    ASSERT_EQ(t.raw_data().size(), want.size() * sizeof(float));
    EXPECT_EQ(std::memcmp(t.raw_data().data(), want.data(), t.raw_data().size()), 0);
  }
  EXPECT_EQ(found, 1);
  EXPECT_EQ(proto.graph().initializer_size(), 6);  // three Gemms' weights and biases
  std::map<std::string, std::string> meta;
  for (const auto& p : proto.metadata_props()) meta[p.key()] = p.value();
  EXPECT_EQ(meta["step"], "1234");
  EXPECT_EQ(meta["test_accuracy"], "0.91");
  EXPECT_EQ(meta["quantize"], "overridden");
  EXPECT_EQ(meta["input_dtype"], "u8");
  EXPECT_EQ(meta["model"], c.canonical());
  EXPECT_FALSE(meta["dtrain_version"].empty());
  EXPECT_EQ(OnnxModel::from_bytes(e.bytes()).metadata().at("step"), "1234");
}

// A layer the exporter has never heard of.
class Mystery : public Module {
 public:
  std::string type() const override { return "Mystery"; }
  Shape output_shape(const Shape& input) const override { return input; }
  Tensor forward(const Tensor& x, PassContext&) override { return x; }
  Tensor backward(const Tensor& dy, PassContext&) override { return dy; }
};

TEST(OnnxExport, UnknownLayerIsAnErrorNamingItsTypeAndPosition) {
  static std::once_flag once;
  std::call_once(once, [] {
    register_model("onnx_with_mystery", [](const ModelConfig&) {
      auto net = std::make_unique<Sequential>();
      net->emplace<Flatten>().emplace<Mystery>().emplace<Linear>(4, 2);
      return net;
    });
  });
  ModelConfig c;
  c.type = "onnx_with_mystery";
  c.input_shape = Shape{4};
  c.num_classes = 2;
  auto model = create_model(c);
  model->build(Device::cpu(), 1);
  try {
    export_onnx(*model, ExportOptions{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer '1' of type 'Mystery' has no ONNX mapping"), std::string::npos)
        << e.what();
  }
}

TEST(OnnxExport, RejectsUnsupportedOptionsNamingThem) {
  auto model = make_test_model(test::image_test_config(), 1, false);
  ExportOptions opt;
  opt.opset = 9;
  EXPECT_THROW(
      {
        try {
          export_onnx(*model, opt);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("opset 9"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  opt = ExportOptions{};
  opt.quantize = "int4";
  EXPECT_THROW(export_onnx(*model, opt), Error);
  opt = ExportOptions{};
  opt.input_dtype = "f16";
  EXPECT_THROW(export_onnx(*model, opt), Error);
  auto tokens = make_test_model(test::tokens_test_config(), 1, false);
  opt = ExportOptions{};
  opt.input_dtype = "u8";
  EXPECT_THROW(export_onnx(*tokens, opt), Error);
}

std::string checker_message(const std::string& bytes) {
  try {
    check_onnx(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(OnnxExport, CheckerRejectsAGraphReadingAnUndefinedValue) {
  ModelConfig c;
  auto model = create_model(c);
  model->build(Device::cpu(), 1);
  onnx::ModelProto proto;
  ASSERT_TRUE(proto.ParseFromString(export_onnx(*model, ExportOptions{}).bytes()));
  EXPECT_EQ(checker_message(proto.SerializeAsString()), "");
  // The second Gemm now reads a value nothing defines.
  for (auto& node : *proto.mutable_graph()->mutable_node())
    if (node.name() == "3/Gemm") node.set_input(0, "no_such_value");
  const std::string msg = checker_message(proto.SerializeAsString());
  EXPECT_NE(msg.find("ONNX checker rejected the model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no_such_value"), std::string::npos) << msg;
}

TEST(OnnxExport, ShapeInferenceRejectsAWrongDeclaredOutputShape) {
  ModelConfig c;
  auto model = create_model(c);
  model->build(Device::cpu(), 1);
  onnx::ModelProto proto;
  ASSERT_TRUE(proto.ParseFromString(export_onnx(*model, ExportOptions{}).bytes()));
  // Declare 11 probabilities where the last Gemm makes 10.
  proto.mutable_graph()
      ->mutable_output(0)
      ->mutable_type()
      ->mutable_tensor_type()
      ->mutable_shape()
      ->mutable_dim(1)
      ->set_dim_value(11);
  const std::string msg = checker_message(proto.SerializeAsString());
  EXPECT_NE(msg.find("ONNX shape inference failed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("probabilities"), std::string::npos) << msg;
  std::printf("[ message ] %s\n", msg.c_str());
}

TEST(OnnxExport, Int8KeepsArgmaxOnRandomInputsAndShrinksTheFile) {
  Generator g(RngKey{9, 0, static_cast<uint32_t>(RngPurpose::test)});
  for (const char* type : {"mlp", "cnn"}) {
    ModelConfig c;
    c.type = type;
    auto model = create_model(c);
    model->build(Device::cpu(), 3);
    ExportOptions opt;
    opt.input_dtype = "u8";
    opt.x_scale = 1.0 / 255;
    const ExportedModel f32 = export_onnx(*model, opt);
    opt.quantize = "int8";
    const ExportedModel int8 = export_onnx(*model, opt);
    const double ratio = static_cast<double>(int8.size()) / static_cast<double>(f32.size());
    EXPECT_LE(ratio, 0.3) << type;
    const OnnxModel ef = OnnxModel::from_bytes(f32.bytes()), eq = OnnxModel::from_bytes(int8.bytes());
    const Tensor x = test::random_u8(test::batch_shape(c, 500), g);
    const std::vector<int64_t> a = ef.run({x})[1].to_vector<int64_t>(), b = eq.run({x})[1].to_vector<int64_t>();
    int64_t same = 0;
    for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
    const double agreement = static_cast<double>(same) / static_cast<double>(a.size());
    EXPECT_GE(agreement, 0.99) << type;
    std::printf("[ int8 ] %s: %zu -> %zu bytes (ratio %.3f), argmax agreement %.4f on %zu random u8 inputs\n", type,
                static_cast<size_t>(f32.size()), static_cast<size_t>(int8.size()), ratio, agreement, a.size());
  }
}

}  // namespace
}  // namespace dtrain
