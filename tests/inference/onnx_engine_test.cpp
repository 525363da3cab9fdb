// inference/onnx_engine: input validation, unsupported ops, int8 dequantization on load, files,
// concurrent runs. (Every layer's round trip through export and the engine: onnx_export_test.)
#include "inference/onnx_engine.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "export/onnx_export.h"
#include "export/quantize.h"
#include "tests/export/onnx_test_models.h"

namespace dtrain {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

OnnxModel mlp_engine(const std::string& input_dtype = "u8") {
  ModelConfig c;
  auto model = create_model(c);
  model->build(Device::cpu(), 2);
  ExportOptions opt;
  opt.input_dtype = input_dtype;
  return OnnxModel::from_bytes(export_onnx(*model, opt).bytes(), Device::cpu(), "mlp.onnx");
}

TEST(OnnxEngine, RejectsInputsOfTheWrongDtypeRankOrDimsNamingTheInput) {
  const OnnxModel m = mlp_engine();
  std::string msg = error_of([&] { m.run({Tensor::zeros(Shape{2, 1, 28, 28})}); });
  EXPECT_NE(msg.find("input 'input' expects UINT8 [-1, 1, 28, 28]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("got FLOAT [2, 1, 28, 28]"), std::string::npos) << msg;
  msg = error_of([&] { m.run({Tensor::zeros(Shape{2, 784}, DType::u8)}); });
  EXPECT_NE(msg.find("got UINT8 [2, 784]"), std::string::npos) << msg;
  msg = error_of([&] { m.run({Tensor::zeros(Shape{2, 1, 28, 27}, DType::u8)}); });
  EXPECT_NE(msg.find("[2, 1, 28, 27]"), std::string::npos) << msg;
  msg = error_of([&] { m.run({}); });
  EXPECT_NE(msg.find("run got 0 inputs, the model takes 1"), std::string::npos) << msg;
  msg = error_of([&] { m.run({Tensor()}); });
  EXPECT_NE(msg.find("got nothing"), std::string::npos) << msg;
  EXPECT_EQ(m.run({Tensor::zeros(Shape{3, 1, 28, 28}, DType::u8)})[0].shape(), (Shape{3, 10}));
}

// A one-node graph: y = op(x) for x FLOAT [N, 4].
std::string one_node_model(const std::string& op, const std::string& node_name) {
  onnx::ModelProto p;
  p.set_ir_version(8);
  p.add_opset_import()->set_version(17);
  auto* g = p.mutable_graph();
  for (auto* vi : {g->add_input(), g->add_output()}) {
    auto* t = vi->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto_DataType_FLOAT);
    t->mutable_shape()->add_dim()->set_dim_param("N");
    t->mutable_shape()->add_dim()->set_dim_value(4);
  }
  g->mutable_input(0)->set_name("x");
  g->mutable_output(0)->set_name("y");
  auto* n = g->add_node();
  n->set_op_type(op);
  n->set_name(node_name);
  n->add_input("x");
  n->add_output("y");
  return p.SerializeAsString();
}

TEST(OnnxEngine, UnsupportedOpIsAnErrorNamingTheOpAndTheNode) {
  const std::string msg =
      error_of([] { OnnxModel::from_bytes(one_node_model("Sin", "angle"), Device::cpu(), "sin.onnx"); });
  EXPECT_NE(msg.find("sin.onnx: unsupported op 'Sin' (node 'angle')"), std::string::npos) << msg;
  const OnnxModel relu = OnnxModel::from_bytes(one_node_model("Relu", "r"));
  EXPECT_EQ(relu.run({Tensor::from_vector<float>({-1, 2, -3, 4}, Shape{1, 4})})[0].to_vector<float>(),
            (std::vector<float>{0, 2, 0, 4}));
}

TEST(OnnxEngine, RejectsGarbageAndGraphsReadingUndefinedValues) {
  EXPECT_NE(error_of([] {
              OnnxModel::from_bytes("not a model", Device::cpu(), "junk.onnx");
            }).find("junk.onnx: not a valid ONNX file"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { OnnxModel::from_bytes("", Device::cpu(), "empty.onnx"); }).find("empty.onnx: the file is empty"),
      std::string::npos);
  onnx::ModelProto no_graph;
  no_graph.set_ir_version(8);
  EXPECT_NE(error_of([&] {
              OnnxModel::from_bytes(no_graph.SerializeAsString(), Device::cpu(), "g.onnx");
            }).find("g.onnx: holds no graph"),
            std::string::npos);
  onnx::ModelProto p;
  ASSERT_TRUE(p.ParseFromString(one_node_model("Relu", "r")));
  p.mutable_graph()->mutable_node(0)->set_input(0, "later");
  const std::string msg = error_of([&] { OnnxModel::from_bytes(p.SerializeAsString()); });
  EXPECT_NE(msg.find("Relu node 'r' reads 'later'"), std::string::npos) << msg;
}

TEST(OnnxEngine, LoadsFromAFileAndNamesAMissingOne) {
  const auto dir = std::filesystem::temp_directory_path() / ("dtrain_onnx_engine_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "relu.onnx").string();
  { std::ofstream(path, std::ios::binary) << one_node_model("Relu", "r"); }
  EXPECT_EQ(OnnxModel::load(path).outputs()[0].name, "y");
  const std::string missing = (dir / "missing.onnx").string();
  EXPECT_NE(error_of([&] { OnnxModel::load(missing); }).find(missing), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(OnnxEngine, Int8WeightsAreDequantizedOnLoadExactlyAsQTimesScale) {
  // The int8 export run by the engine equals the f32 export of the same model whose weights were
  // replaced by q * scale: the engine's dequantization is exact, and the rest of the graph is f32.
  auto model = test::make_test_model(test::image_test_config(), 21);
  ExportOptions opt;
  opt.quantize = "int8";
  const OnnxModel int8 = OnnxModel::from_bytes(export_onnx(*model, opt).bytes());
  for (Parameter* p : model->parameters()) {
    if (p->name.find("weight") == std::string::npos || p->shape.size() < 2) continue;  // LayerNorm stays f32
    const std::vector<float> w = p->value.to_vector<float>();
    const QuantizedInt8 q = quantize_int8_per_channel(w, p->shape[0]);
    std::vector<float> back(w.size());
    const size_t per = w.size() / q.scales.size();
    for (size_t i = 0; i < w.size(); ++i) back[i] = static_cast<float>(q.values[i]) * q.scales[i / per];
    p->value.copy_from(Tensor::from_vector(back, p->shape));
  }
  const OnnxModel dequantized = OnnxModel::from_bytes(export_onnx(*model, ExportOptions{}).bytes());
  Generator g(RngKey{4, 0, static_cast<uint32_t>(RngPurpose::test)});
  const Tensor x = Tensor::randn(test::batch_shape(model->config(), 37), 0, 1, g);
  EXPECT_EQ(int8.run({x})[0].to_vector<float>(), dequantized.run({x})[0].to_vector<float>());
}

TEST(OnnxEngine, ConcurrentRunsGiveTheSameOutputsAsSequentialOnes) {
  auto model = test::make_test_model(test::image_test_config(), 8);
  const OnnxModel m = OnnxModel::from_bytes(export_onnx(*model, ExportOptions{}).bytes());
  Generator g(RngKey{8, 0, static_cast<uint32_t>(RngPurpose::test)});
  std::vector<Tensor> inputs;
  std::vector<std::vector<float>> want;
  for (int i = 0; i < 4; ++i) {
    inputs.push_back(Tensor::randn(test::batch_shape(model->config(), 5 + i), 0, 1, g));
    want.push_back(m.run({inputs.back()})[0].to_vector<float>());
  }
  std::vector<std::vector<float>> got(4);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < 4; ++i)
      threads.emplace_back([&, i] {
        for (int rep = 0; rep < 20; ++rep) got[i] = m.run({inputs[i]})[0].to_vector<float>();
      });
  }
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], want[i]) << "thread " << i;
}

}  // namespace
}  // namespace dtrain
