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

// Stages of a split model, run one after the other, give the whole graph's answer; the first
// takes the client's input (u8 here), the later ones FP32 "input", all but the last write
// "activation".
TEST(OnnxExport, StagesOfASplitModelChainToTheWholeModelsOutputs) {
  auto model = make_test_model(test::image_test_config(), 12);
  ExportOptions opt;
  opt.input_dtype = "u8";
  opt.x_scale = 1.0 / 255;
  const OnnxModel whole = OnnxModel::from_bytes(export_onnx(*model, opt).bytes());
  const auto n = static_cast<int64_t>(model->net().children().size());
  Generator g(RngKey{7, 0, static_cast<uint32_t>(RngPurpose::test)});
  const Tensor x = test::random_u8(test::batch_shape(model->config(), 9), g);
  const std::vector<Tensor> want = whole.run({x});
  for (const std::vector<int64_t>& cuts : {std::vector<int64_t>{0, 3, n}, std::vector<int64_t>{0, 1, 6, 9, n}}) {
    std::vector<Tensor> y{x};
    for (size_t k = 0; k + 1 < cuts.size(); ++k) {
      ExportOptions o = opt;
      o.layer_begin = cuts[k];
      o.layer_end = k + 2 == cuts.size() ? -1 : cuts[k + 1];
      const ExportedModel e = export_onnx(*model, o);
      EXPECT_EQ(e.inputs[0].name, "input");
      EXPECT_EQ(e.inputs[0].dtype, k == 0 ? DType::u8 : DType::f32);
      EXPECT_EQ(e.outputs[0].name, k + 2 == cuts.size() ? "probabilities" : "activation");
      y = OnnxModel::from_bytes(e.bytes()).run(y);
    }
    ASSERT_EQ(y.size(), 2u);
    const std::vector<float> got = y[0].to_vector<float>(), expected = want[0].to_vector<float>();
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], expected[i], 1e-6) << "cuts " << cuts.size() << " value " << i;
    EXPECT_EQ(y[1].to_vector<int64_t>(), want[1].to_vector<int64_t>());
  }
  ExportOptions bad = opt;
  bad.layer_begin = 3;
  bad.layer_end = 3;
  try {
    export_onnx(*model, bad);
    ADD_FAILURE() << "an empty stage exported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers [3, 3) are not a stage"), std::string::npos) << e.what();
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

// ---- the gpt: model.onnx (logits, dynamic length) and model_with_past.onnx (the decoding contract)

TEST(OnnxExportGpt, DeclaresInputIdsAndLogitsWithDynamicBatchAndLength) {
  auto model = make_test_model(test::gpt_test_config(16), 31);
  const ExportedModel e = export_onnx(*model, ExportOptions{});
  EXPECT_EQ(e.inputs, (std::vector<TensorInfo>{{"input_ids", DType::i64, {-1, -1}}}));
  EXPECT_EQ(e.outputs, (std::vector<TensorInfo>{{"logits", DType::f32, {-1, -1, 256}}}));
  ASSERT_TRUE(e.language_model.has_value());
  EXPECT_EQ(*e.language_model, (LanguageModelInfo{256, 16, 2, 2, 32}));
  const OnnxModel engine = OnnxModel::from_bytes(e.bytes());
  EXPECT_EQ(engine.inputs(), e.inputs);
  EXPECT_EQ(engine.outputs(), e.outputs);
  // Not a language model: no "language_model", and no graph with a cache.
  EXPECT_FALSE(export_onnx(*make_test_model(test::tokens_test_config(), 1), ExportOptions{}).language_model);
}

TEST(OnnxExportGpt, EngineLogitsMatchTheTrainingForwardAtEveryLength) {
  auto model = make_test_model(test::gpt_test_config(16), 32);
  const OnnxModel engine = OnnxModel::from_bytes(export_onnx(*model, ExportOptions{}).bytes());
  Generator g(RngKey{32, 0, static_cast<uint32_t>(RngPurpose::test)});
  for (int64_t batch : {1, 3})
    for (int64_t t : {1, 5, 16}) {
      const Tensor ids = test::random_ids(Shape{batch, t}, 256, g);
      const Tensor got = engine.run({ids})[0];
      ASSERT_EQ(got.shape(), (Shape{batch, t, 256}));
      const float diff = test::max_abs_diff(got, test::reference_logits(*model, ids));
      EXPECT_LE(diff, 1e-4f) << "batch " << batch << " length " << t;
      std::printf("[ gpt ] batch %lld length %2lld: max |engine - training forward| = %.3g\n",
                  static_cast<long long>(batch), static_cast<long long>(t), diff);
    }
}

TEST(OnnxExportGpt, WithPastDeclaresTheDecodingContract) {
  auto model = make_test_model(test::gpt_test_config(16), 33);
  const ExportedModel e = export_onnx_with_past(*model, ExportOptions{});
  std::vector<TensorInfo> inputs{{"input_ids", DType::i64, {-1, -1}},
                                 {"position_ids", DType::i64, {-1, -1}},
                                 {"attention_mask", DType::i64, {-1, -1}}};
  std::vector<TensorInfo> outputs{{"logits", DType::f32, {-1, -1, 256}}};
  for (int layer = 0; layer < 2; ++layer)
    for (const char* part : {"key", "value"}) {
      const std::string suffix = std::to_string(layer) + "." + part;
      inputs.push_back({"past_key_values." + suffix, DType::f32, {-1, 2, -1, 16}});
      outputs.push_back({"present." + suffix, DType::f32, {-1, 2, -1, 16}});
    }
  EXPECT_EQ(e.inputs, inputs);
  EXPECT_EQ(e.outputs, outputs);
  const OnnxModel engine = OnnxModel::from_bytes(e.bytes());
  EXPECT_EQ(engine.inputs(), inputs);
  EXPECT_EQ(engine.outputs(), outputs);
  onnx::ModelProto proto;
  ASSERT_TRUE(proto.ParseFromString(e.bytes()));
  EXPECT_EQ(proto.graph().input(2).type().tensor_type().shape().dim(1).dim_param(), "P_plus_S");
  EXPECT_EQ(proto.graph().input(3).type().tensor_type().shape().dim(2).dim_param(), "P");
}

// A prompt in one call on an empty cache (P = 0), then one token per call: the logits at every
// position are model.onnx's, and the caches grow by one position per call.
TEST(OnnxExportGpt, WithPastGivesTheFullModelsLogitsTokenByToken) {
  auto model = make_test_model(test::gpt_test_config(16), 34);
  const OnnxModel full = OnnxModel::from_bytes(export_onnx(*model, ExportOptions{}).bytes());
  const OnnxModel with_past = OnnxModel::from_bytes(export_onnx_with_past(*model, ExportOptions{}).bytes());
  Generator g(RngKey{34, 0, static_cast<uint32_t>(RngPurpose::test)});
  const std::vector<int64_t> tokens = test::random_ids(Shape{16}, 256, g).to_vector<int64_t>();
  const Tensor want = full.run({test::ids_tensor(tokens)})[0];  // [1, 16, 256]
  const std::vector<int64_t> prompt(tokens.begin(), tokens.begin() + 5);
  test::CachedRun r = test::run_with_past(with_past, test::ids_tensor(prompt), test::ids_tensor({0, 1, 2, 3, 4}),
                                          test::ids_tensor({1, 1, 1, 1, 1}), test::empty_cache(with_past, 1));
  EXPECT_LE(test::max_abs_diff(r.logits, want.view(Shape{16, 256}).slice(0, 5).view(Shape{1, 5, 256})), 1e-5f);
  for (int64_t p = 5; p < 16; ++p) {
    r = test::run_with_past(with_past, test::ids_tensor({tokens[p]}), test::ids_tensor({p}),
                            test::ids_tensor(std::vector<int64_t>(p + 1, 1)), r.cache);
    ASSERT_EQ(r.cache[0].shape(), (Shape{1, 2, p + 1, 16}));
    EXPECT_LE(test::max_abs_diff(r.logits, want.view(Shape{16, 256}).slice(p, p + 1).view(Shape{1, 1, 256})), 1e-5f)
        << "position " << p;
  }
}

// Two prompts of 3 and 6 tokens in one batch, the short one left-padded, then a step of both: each
// row's logits are those of the row run alone.
TEST(OnnxExportGpt, WithPastMasksLeftPaddingPerRow) {
  auto model = make_test_model(test::gpt_test_config(16), 35);
  const OnnxModel full = OnnxModel::from_bytes(export_onnx(*model, ExportOptions{}).bytes());
  const OnnxModel with_past = OnnxModel::from_bytes(export_onnx_with_past(*model, ExportOptions{}).bytes());
  const std::vector<int64_t> a{7, 8, 9, 10}, b{20, 21, 22, 23, 24, 25, 26};  // prompt, then the step's token
  const Tensor ids = test::ids_tensor({0, 0, 0, 7, 8, 9, 20, 21, 22, 23, 24, 25}, 2);
  const Tensor positions = test::ids_tensor({0, 0, 0, 0, 1, 2, 0, 1, 2, 3, 4, 5}, 2);
  const Tensor mask = test::ids_tensor({0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 2);
  const test::CachedRun prefill = test::run_with_past(with_past, ids, positions, mask, test::empty_cache(with_past, 2));
  const test::CachedRun step =
      test::run_with_past(with_past, test::ids_tensor({10, 26}, 2), test::ids_tensor({3, 6}, 2),
                          test::ids_tensor({0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 2), prefill.cache);
  ASSERT_EQ(step.cache[3].shape(), (Shape{2, 2, 7, 16}));
  const std::vector<float> got_prefill = prefill.logits.to_vector<float>(), got_step = step.logits.to_vector<float>();
  for (int row = 0; row < 2; ++row) {
    const std::vector<int64_t>& tokens = row == 0 ? a : b;
    const std::vector<float> want = full.run({test::ids_tensor(tokens)})[0].to_vector<float>();
    const size_t n = tokens.size() - 1, pad = 6 - n;
    float diff = 0;
    for (size_t t = 0; t < n; ++t)
      for (size_t v = 0; v < 256; ++v)
        diff = std::max(diff, std::fabs(got_prefill[(row * 6 + pad + t) * 256 + v] - want[t * 256 + v]));
    for (size_t v = 0; v < 256; ++v) diff = std::max(diff, std::fabs(got_step[row * 256 + v] - want[n * 256 + v]));
    EXPECT_LE(diff, 1e-5f) << "row " << row;
  }
}

TEST(OnnxExportGpt, GreedyContinuationIsTheSameWithAndWithoutTheCache) {
  auto model = make_test_model(test::gpt_test_config(80), 36);
  const OnnxModel full = OnnxModel::from_bytes(export_onnx(*model, ExportOptions{}).bytes());
  const OnnxModel with_past = OnnxModel::from_bytes(export_onnx_with_past(*model, ExportOptions{}).bytes());
  const std::vector<int64_t> prompt{'H', 'e', 'l', 'l', 'o'};
  const std::vector<int64_t> cached = test::greedy_cached(with_past, prompt, 64);
  EXPECT_EQ(cached.size(), 69u);
  EXPECT_EQ(cached, test::greedy_full(full, prompt, 64, 80));
  std::string text;
  for (int64_t t : cached) text += std::to_string(t) + " ";
  std::printf("[ gpt ] greedy: %s\n", text.c_str());
}

TEST(OnnxExportGpt, Int8ExportRunsAndKeepsMostArgmaxes) {
  auto model = make_test_model(test::gpt_test_config(16), 37);
  ExportOptions opt;
  opt.quantize = "int8";
  const OnnxModel int8 = OnnxModel::from_bytes(export_onnx(*model, opt).bytes());
  const OnnxModel past = OnnxModel::from_bytes(export_onnx_with_past(*model, opt).bytes());
  Generator g(RngKey{37, 0, static_cast<uint32_t>(RngPurpose::test)});
  const Tensor ids = test::random_ids(Shape{4, 16}, 256, g);
  const std::vector<int64_t> a = ops::argmax_rows(int8.run({ids})[0].view(Shape{64, 256})).to_vector<int64_t>();
  const std::vector<int64_t> b =
      ops::argmax_rows(test::reference_logits(*model, ids).view(Shape{64, 256})).to_vector<int64_t>();
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  EXPECT_GE(same, 56) << "of 64";
  EXPECT_EQ(test::greedy_cached(past, {1, 2, 3}, 8), test::greedy_full(int8, {1, 2, 3}, 8, 16));
}

TEST(OnnxExportGpt, WithPastOfAModelThatIsNoLanguageModelOrAnOldOpsetIsAnError) {
  auto mlp = make_test_model(test::image_test_config(), 1, false);
  try {
    export_onnx_with_past(*mlp, ExportOptions{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'onnx_every_layer_image' is not a language model"), std::string::npos)
        << e.what();
  }
  auto gpt = make_test_model(test::gpt_test_config(16), 1, false);
  ExportOptions old;
  old.opset = 13;
  for (auto* f : {&export_onnx, &export_onnx_with_past}) {
    try {
      f(*gpt, old);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("needs opset 17 (LayerNormalization), got 13"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace dtrain
