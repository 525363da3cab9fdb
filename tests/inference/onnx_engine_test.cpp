// inference/onnx_engine: input validation, unsupported ops, int8 dequantization on load, files,
// concurrent runs. (Every layer's round trip through export and the engine: onnx_export_test.)
#include "inference/onnx_engine.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <variant>

#include "export/onnx_export.h"
#include "export/quantize.h"
#include "inference/onnx_ops.h"
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

// The mlp; u8 pixels scaled and shifted in the graph as dtrain's loader does (a Mul and an Add of
// scalars).
std::string mlp_bytes(const std::string& input_dtype) {
  ModelConfig c;
  auto model = create_model(c);
  model->build(Device::cpu(), 2);
  ExportOptions opt;
  opt.input_dtype = input_dtype;
  if (input_dtype == "u8") opt.x_scale = 1.0 / 255, opt.x_shift = -0.5;
  return export_onnx(*model, opt).bytes();
}

OnnxModel mlp_engine(const std::string& input_dtype = "u8") {
  return OnnxModel::from_bytes(mlp_bytes(input_dtype), Device::cpu(), "mlp.onnx");
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

// On a GPU the ops that read values on the host (Reshape's shape, Slice's bounds, Gather's indices,
// the scalar of a Mul or Add) read the copies kept at load instead of copying them back every run.
// Which constants are kept does not depend on the device, so the CPU shows it: every small one, no
// large one, and every constant such an op reads.
TEST(OnnxEngine, KeepsHostCopiesOfTheSmallConstantsThatOpsReadOnTheHost) {
  auto model = test::make_test_model(test::gpt_test_config(16), 5);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"gpt.onnx", export_onnx(*model, ExportOptions{}).bytes()},
      {"gpt_with_past.onnx", export_onnx_with_past(*model, ExportOptions{}).bytes()},
      {"mlp.onnx", mlp_bytes("u8")}};
  for (const auto& [name, bytes] : files) {
    onnx::ModelProto p;
    ASSERT_TRUE(p.ParseFromString(bytes));
    const OnnxModel m = OnnxModel::from_bytes(bytes, Device::cpu(), name);
    const std::set<std::string> kept(m.host_constants().begin(), m.host_constants().end());
    std::set<std::string> small;
    for (const auto& t : p.graph().initializer()) {
      int64_t n = 1;
      for (int64_t d : t.dims()) n *= d;
      if (n <= inference::kHostCopyElems) small.insert(t.name());
    }
    EXPECT_EQ(kept, small) << name;
    int read_on_host = 0;
    for (const auto& n : p.graph().node()) {
      std::vector<int> host_inputs;  // the inputs the op reads on the host
      if (n.op_type() == "Reshape" || n.op_type() == "Gather") host_inputs = {1};
      if (n.op_type() == "Slice") host_inputs = {1, 2, 3, 4};
      if (n.op_type() == "Mul" || n.op_type() == "Add") host_inputs = {0, 1};
      for (int i : host_inputs) {
        if (i >= n.input_size() || !small.count(n.input(i))) continue;
        EXPECT_TRUE(kept.count(n.input(i))) << n.op_type() << " '" << n.name() << "' reads " << n.input(i);
        ++read_on_host;
      }
    }
    EXPECT_GT(read_on_host, 0) << name;
  }
}

// ---- the layout and elementwise ops the transformer graphs use, one node at a time

struct Attr {
  std::string name;
  std::variant<int64_t, std::vector<int64_t>> value;
};

int onnx_elem(DType t) {
  switch (t) {
    case DType::i64: return onnx::TensorProto_DataType_INT64;
    case DType::i32: return onnx::TensorProto_DataType_INT32;
    default: return onnx::TensorProto_DataType_FLOAT;
  }
}

// A graph of one node `op` named "n" whose inputs are graph inputs with every dim dynamic; runs it
// on `inputs` and returns its output (declared `out`).
Tensor run_op(const std::string& op, const std::vector<Tensor>& inputs, const std::vector<Attr>& attrs = {},
              DType out = DType::f32) {
  onnx::ModelProto p;
  p.set_ir_version(8);
  p.add_opset_import()->set_version(17);
  auto* g = p.mutable_graph();
  auto* n = g->add_node();
  n->set_op_type(op);
  n->set_name("n");
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto* vi = g->add_input();
    vi->set_name(std::string("x").append(std::to_string(i)));  // (not "x" + ...: GCC 12's -Wrestrict false positive)
    auto* t = vi->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx_elem(inputs[i].dtype()));
    auto* shape = t->mutable_shape();
    for (int k = 0; k < inputs[i].ndim(); ++k)
      shape->add_dim()->set_dim_param(std::string("d").append(std::to_string(k)));
    n->add_input(vi->name());
  }
  n->add_output("y");
  auto* y = g->add_output();
  y->set_name("y");
  y->mutable_type()->mutable_tensor_type()->set_elem_type(onnx_elem(out));
  y->mutable_type()->mutable_tensor_type()->mutable_shape();
  for (const Attr& a : attrs) {
    auto* at = n->add_attribute();
    at->set_name(a.name);
    if (const auto* i = std::get_if<int64_t>(&a.value)) {
      at->set_type(onnx::AttributeProto_AttributeType_INT);
      at->set_i(*i);
    } else {
      at->set_type(onnx::AttributeProto_AttributeType_INTS);
      for (int64_t v : std::get<std::vector<int64_t>>(a.value)) at->add_ints(v);
    }
  }
  return OnnxModel::from_bytes(p.SerializeAsString(), Device::cpu(), op + ".onnx").run(inputs)[0];
}

Tensor iota(const Shape& shape) {
  std::vector<float> v(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  return Tensor::from_vector(v, shape);
}

Tensor i64s(const std::vector<int64_t>& v) { return Tensor::from_vector(v, Shape{static_cast<int64_t>(v.size())}); }

TEST(OnnxEngineOps, TransposeMovesEveryDimAndReversesWithoutPerm) {
  const Tensor y = run_op("Transpose", {iota(Shape{2, 3, 4})}, {{"perm", std::vector<int64_t>{2, 0, 1}}});
  ASSERT_EQ(y.shape(), (Shape{4, 2, 3}));
  const std::vector<float> v = y.to_vector<float>();
  for (int64_t k = 0; k < 4; ++k)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(v[(k * 2 + i) * 3 + j], static_cast<float>((i * 3 + j) * 4 + k));
  EXPECT_EQ(run_op("Transpose", {iota(Shape{2, 3})}).to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  const std::string msg = error_of([] {
    run_op("Transpose", {iota(Shape{2, 3})}, {{"perm", std::vector<int64_t>{0, 0}}});
  });
  EXPECT_NE(msg.find("Transpose node 'n': perm [0, 0] is not a permutation"), std::string::npos) << msg;
}

TEST(OnnxEngineOps, ReshapeCopiesZeroDimsAndInfersMinusOne) {
  EXPECT_EQ(run_op("Reshape", {iota(Shape{2, 3, 4}), i64s({0, -1})}).shape(), (Shape{2, 12}));
  EXPECT_EQ(run_op("Reshape", {iota(Shape{2, 3, 4}), i64s({0, 0, 2, 2})}).shape(), (Shape{2, 3, 2, 2}));
  EXPECT_EQ(run_op("Reshape", {iota(Shape{1, 0, 4}), i64s({0, 0, 2, 2})}).shape(), (Shape{1, 0, 2, 2}));
  const std::string msg = error_of([] { run_op("Reshape", {iota(Shape{2, 3, 4}), i64s({0, 5})}); });
  EXPECT_NE(msg.find("Reshape node 'n': cannot reshape [2, 3, 4] (24 elements) to [2, 5]"), std::string::npos) << msg;
}

TEST(OnnxEngineOps, SliceClampsCountsFromTheEndAndSteps) {
  const Tensor x = iota(Shape{4, 5});
  Tensor y = run_op("Slice", {x, i64s({1, -2}), i64s({3, INT64_MAX}), i64s({0, 1})});
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{8, 9, 13, 14}));
  y = run_op("Slice", {x, i64s({-1}), i64s({INT64_MIN}), i64s({1}), i64s({-2})});  // columns 4, 2, 0
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{4, 2, 0, 9, 7, 5, 14, 12, 10, 19, 17, 15}));
  EXPECT_EQ(run_op("Slice", {x, i64s({3}), i64s({1}), i64s({0})}).shape(), (Shape{0, 5}));
}

// A Slice that is one contiguous block of its input (rows of a table: the positions of a gpt) is a
// view, on any device: no copy, and on a GPU no round trip through the host.
TEST(OnnxEngineOps, SliceOfContiguousRowsIsAViewOfItsInput) {
  const Tensor x = iota(Shape{4, 5});
  const Tensor rows = run_op("Slice", {x, i64s({1}), i64s({3}), i64s({0})});
  EXPECT_EQ(rows.to_vector<float>(), (std::vector<float>{5, 6, 7, 8, 9, 10, 11, 12, 13, 14}));
  EXPECT_EQ(rows.storage(), x.storage());
  const Tensor one_row = iota(Shape{1, 6});
  const Tensor middle = run_op("Slice", {one_row, i64s({2}), i64s({5}), i64s({1})});
  EXPECT_EQ(middle.to_vector<float>(), (std::vector<float>{2, 3, 4}));
  EXPECT_EQ(middle.storage(), one_row.storage());
  const Tensor columns = run_op("Slice", {x, i64s({1}), i64s({3}), i64s({1})});  // not contiguous: a copy
  EXPECT_EQ(columns.to_vector<float>(), (std::vector<float>{1, 2, 6, 7, 11, 12, 16, 17}));
  EXPECT_NE(columns.storage(), x.storage());
}

TEST(OnnxEngineOps, ConcatJoinsAlongAnAxisIncludingEmptyInputs) {
  const Tensor empty = Tensor::zeros(Shape{1, 2, 0, 3});
  const Tensor b = iota(Shape{1, 2, 2, 3});
  EXPECT_EQ(run_op("Concat", {empty, b}, {{"axis", int64_t{2}}}).to_vector<float>(), b.to_vector<float>());
  const Tensor y = run_op("Concat", {iota(Shape{2, 1}), iota(Shape{2, 2})}, {{"axis", int64_t{-1}}});
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{0, 0, 1, 1, 2, 3}));
  EXPECT_EQ(run_op("Concat", {i64s({4}), i64s({7, 8})}, {{"axis", int64_t{0}}}, DType::i64).to_vector<int64_t>(),
            (std::vector<int64_t>{4, 7, 8}));
  const std::string msg = error_of([] {
    run_op("Concat", {iota(Shape{2, 1}), iota(Shape{3, 1})}, {{"axis", int64_t{1}}});
  });
  EXPECT_NE(msg.find("Concat node 'n': input 1 (FLOAT [3, 1]) does not match input 0 (FLOAT [2, 1]) outside axis 1"),
            std::string::npos)
      << msg;
}

TEST(OnnxEngineOps, ShapeReturnsTheDimsBetweenStartAndEnd) {
  const Tensor x = Tensor::zeros(Shape{3, 4, 5});
  EXPECT_EQ(run_op("Shape", {x}, {}, DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(run_op("Shape", {x}, {{"start", int64_t{1}}, {"end", int64_t{2}}}, DType::i64).to_vector<int64_t>(),
            (std::vector<int64_t>{4}));
  EXPECT_EQ(run_op("Shape", {x}, {{"start", int64_t{-2}}}, DType::i64).to_vector<int64_t>(),
            (std::vector<int64_t>{4, 5}));
}

TEST(OnnxEngineOps, ArithmeticBroadcastsLikeNumPy) {
  const Tensor a = iota(Shape{2, 1, 3}), b = iota(Shape{4, 1});
  const std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>();
  const Tensor sum = run_op("Add", {a, b}), diff = run_op("Sub", {a, b}), prod = run_op("Mul", {b, a});
  ASSERT_EQ(sum.shape(), (Shape{2, 4, 3}));
  const std::vector<float> s = sum.to_vector<float>(), d = diff.to_vector<float>(), m = prod.to_vector<float>();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 3; ++k) {
        const size_t at = static_cast<size_t>((i * 4 + j) * 3 + k);
        EXPECT_EQ(s[at], av[i * 3 + k] + bv[j]);
        EXPECT_EQ(d[at], av[i * 3 + k] - bv[j]);
        EXPECT_EQ(m[at], av[i * 3 + k] * bv[j]);
      }
  // A mask over the heads ([N, 1, S, K] onto [N, H, S, K]) and a bias over the trailing dims.
  const Tensor scores = iota(Shape{2, 3, 2, 2}), mask = iota(Shape{2, 1, 2, 2});
  const std::vector<float> masked = run_op("Add", {scores, mask}).to_vector<float>();
  for (int n = 0; n < 2; ++n)
    for (int h = 0; h < 3; ++h)
      for (int i = 0; i < 4; ++i)
        EXPECT_EQ(masked[(n * 3 + h) * 4 + i], static_cast<float>((n * 3 + h) * 4 + i + n * 4 + i));
  const std::vector<float> biased = run_op("Add", {iota(Shape{2, 2}), scores}).to_vector<float>();
  for (int i = 0; i < 24; ++i) EXPECT_EQ(biased[i], static_cast<float>(i + i % 4));
  EXPECT_EQ(run_op("Div", {iota(Shape{1, 3}), Tensor::full(Shape{1}, 4.0f)}).to_vector<float>(),
            (std::vector<float>{0, 0.25f, 0.5f}));
  EXPECT_EQ(run_op("Sub", {i64s({16, 16}), i64s({3, 16})}, {}, DType::i64).to_vector<int64_t>(),
            (std::vector<int64_t>{13, 0}));
  std::string msg = error_of([] { run_op("Add", {iota(Shape{2, 3}), iota(Shape{2, 2})}); });
  EXPECT_NE(msg.find("Add node 'n': shapes [2, 3] and [2, 2] do not broadcast"), std::string::npos) << msg;
  msg = error_of([] { run_op("Mul", {iota(Shape{2}), i64s({1, 2})}); });
  EXPECT_NE(msg.find("Mul of FLOAT and INT64 is not supported"), std::string::npos) << msg;
  msg = error_of([] { run_op("Div", {i64s({1, 2}), i64s({1, 0})}, {}, DType::i64); });
  EXPECT_NE(msg.find("Div node 'n': division by zero"), std::string::npos) << msg;
}

TEST(OnnxEngineOps, MatMulBroadcastsBatchDims) {
  Generator g(RngKey{3, 0, static_cast<uint32_t>(RngPurpose::test)});
  const Tensor a = Tensor::randn(Shape{2, 1, 3, 4}, 0, 1, g), b = Tensor::randn(Shape{3, 4, 5}, 0, 1, g);
  const Tensor y = run_op("MatMul", {a, b});
  ASSERT_EQ(y.shape(), (Shape{2, 3, 3, 5}));
  const std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>(), yv = y.to_vector<float>();
  for (int n = 0; n < 2; ++n)
    for (int h = 0; h < 3; ++h)
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 5; ++j) {
          double want = 0;
          for (int k = 0; k < 4; ++k) want += av[(n * 3 + i) * 4 + k] * bv[(h * 4 + k) * 5 + j];
          EXPECT_NEAR(yv[((n * 3 + h) * 3 + i) * 5 + j], want, 1e-5) << n << h << i << j;
        }
  EXPECT_EQ(run_op("MatMul", {Tensor::zeros(Shape{2, 0, 4}), Tensor::zeros(Shape{2, 4, 3})}).shape(), (Shape{2, 0, 3}));
  const std::string msg = error_of([] { run_op("MatMul", {iota(Shape{2, 3, 4}), iota(Shape{3, 4, 5})}); });
  EXPECT_NE(msg.find("MatMul node 'n' (batch dims): shapes [2] and [3] do not broadcast"), std::string::npos) << msg;
}

TEST(OnnxEngineOps, TanhAndCastsBetweenFloatAndInt64) {
  const Tensor x = Tensor::from_vector<float>({-3.0f, -0.5f, 0.0f, 0.25f, 8.0f}, Shape{5});
  const std::vector<float> y = run_op("Tanh", {x}).to_vector<float>();
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], std::tanh(x.to_vector<float>()[i]), 1e-6);
  EXPECT_EQ(run_op("Cast", {i64s({0, 1, -7})}, {{"to", int64_t{onnx::TensorProto_DataType_FLOAT}}}).to_vector<float>(),
            (std::vector<float>{0, 1, -7}));
  EXPECT_EQ(run_op("Cast", {Tensor::from_vector<float>({2.7f, -2.7f}, Shape{2})},
                   {{"to", int64_t{onnx::TensorProto_DataType_INT64}}}, DType::i64)
                .to_vector<int64_t>(),
            (std::vector<int64_t>{2, -2}));
  const std::string msg = error_of([] {
    run_op("Cast", {i64s({1})}, {{"to", int64_t{onnx::TensorProto_DataType_DOUBLE}}});
  });
  EXPECT_NE(msg.find("Cast node 'n': Cast to DOUBLE is not supported"), std::string::npos) << msg;
}

// One attention head's scores over a key cache, as the decoder graph has it: present =
// Concat(past [N, H, P, D], new [N, H, 1, D], axis 2), a graph output; scores = MatMul(q,
// Transpose(present, 0 1 3 2)).
OnnxModel key_cache_graph() {
  onnx::ModelProto p;
  p.set_ir_version(8);
  p.add_opset_import()->set_version(17);
  auto* g = p.mutable_graph();
  for (const char* name : {"past", "new", "q"}) {
    auto* t = g->add_input();
    t->set_name(name);
    t->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto_DataType_FLOAT);
    for (const char* d : {"N", "H", name == std::string("past") ? "P" : "one", "D"})
      t->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_param(d);
  }
  const auto node = [&](const char* op, std::vector<std::string> in, const char* out) {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(out);
    for (const auto& i : in) n->add_input(i);
    n->add_output(out);
    return n;
  };
  auto* concat = node("Concat", {"past", "new"}, "present")->add_attribute();
  concat->set_name("axis");
  concat->set_type(onnx::AttributeProto_AttributeType_INT);
  concat->set_i(2);
  auto* perm = node("Transpose", {"present"}, "keys_t")->add_attribute();
  perm->set_name("perm");
  perm->set_type(onnx::AttributeProto_AttributeType_INTS);
  for (int64_t v : {0, 1, 3, 2}) perm->add_ints(v);
  node("MatMul", {"q", "keys_t"}, "scores");
  for (const char* name : {"present", "scores"}) {
    auto* y = g->add_output();
    y->set_name(name);
    y->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto_DataType_FLOAT);
    y->mutable_type()->mutable_tensor_type()->mutable_shape();
  }
  return OnnxModel::from_bytes(p.SerializeAsString(), Device::cpu(), "cache.onnx");
}

TEST(OnnxEngine, AKeyCacheWithRoomGrowsInPlaceWithTheSameResults) {
  const OnnxModel m = key_cache_graph();
  EXPECT_TRUE(m.appends_in_place(0));
  EXPECT_FALSE(m.appends_in_place(1));
  Generator g(RngKey{5, 0, static_cast<uint32_t>(RngPurpose::test)});
  const int64_t n = 2, h = 3, cap = 6, p = 4, d = 5;
  Tensor buffer = Tensor::randn(Shape{n, h, cap, d}, 0, 1, g);
  const Tensor past = buffer.as_strided(Shape{n, h, p, d}, Shape{h * cap * d, cap * d, d, 1}, 0);
  const Tensor fresh = Tensor::randn(Shape{n, h, 1, d}, 0, 1, g), q = Tensor::randn(Shape{n, h, 1, d}, 0, 1, g);
  // The reference: the same past, contiguous, through the ordinary Concat.
  std::vector<float> packed;
  for (int64_t i = 0; i < n * h; ++i)
    packed.insert(packed.end(), buffer.data<float>() + i * cap * d, buffer.data<float>() + i * cap * d + p * d);
  const std::vector<Tensor> want = m.run({Tensor::from_vector(packed, Shape{n, h, p, d}), fresh, q});
  OnnxModel::RunOptions grow;
  grow.append_in_place = {true};
  const std::vector<Tensor> got = m.run({past, fresh, q}, grow);
  ASSERT_EQ(got[0].shape(), (Shape{n, h, p + 1, d}));
  EXPECT_EQ(got[0].storage(), buffer.storage()) << "present is the grown view of the caller's buffer";
  EXPECT_EQ(got[0].strides(), past.strides());
  EXPECT_EQ(buffer.data<float>()[(1 * h + 2) * cap * d + p * d + 4], fresh.data<float>()[(1 * h + 2) * d + 4])
      << "the new keys sit right after the past, in the room";
  EXPECT_EQ(got[1].to_vector<float>(), want[1].to_vector<float>()) << "scores through the strided keys";
  // No room (a full buffer): the engine copies, with the same results.
  const Tensor full = buffer.as_strided(Shape{n, h, cap, d}, Shape{h * cap * d, cap * d, d, 1}, 0);
  const std::vector<Tensor> copied = m.run({full, fresh, q}, grow);
  EXPECT_NE(copied[0].storage(), buffer.storage());
  EXPECT_EQ(copied[0].shape(), (Shape{n, h, cap + 1, d}));
  const std::string msg = error_of([&] { m.run({past, fresh, q}); });
  EXPECT_NE(msg.find("input 'past' must be contiguous"), std::string::npos) << msg;
}

// An empty cache (P = 0) is an input of size 0 in a dynamic dim; only the batch must not be empty.
TEST(OnnxEngineOps, DynamicDimsMayBeEmptyExceptTheBatch) {
  EXPECT_EQ(run_op("Relu", {Tensor::zeros(Shape{2, 0, 3})}).shape(), (Shape{2, 0, 3}));
  const std::string msg = error_of([] { run_op("Relu", {Tensor::zeros(Shape{0, 3})}); });
  EXPECT_NE(msg.find("input 'x0' expects FLOAT [-1, -1] (-1: any size; the first dim >= 1), got FLOAT [0, 3]"),
            std::string::npos)
      << msg;
}

}  // namespace
}  // namespace dtrain
