// The ONNX engine on a GPU against the same file on the CPU: the exported mlp, cnn and gpt (whole
// sequences and decoding through model_with_past.onnx) and the test models that hold every layer;
// a run that waits for the device only to copy its input in (constants read on the host come from
// the copies kept at load); and several threads, each on its own stream (gpu::StreamScope, as
// dtrain-serve's workers), running at once. Each test skips with the reason without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "core/gpu.h"
#include "export/onnx_export.h"
#include "inference/onnx_engine.h"
#include "tests/core/cuda_test_util.h"
#include "tests/export/onnx_test_models.h"

namespace dtrain {
namespace {

using test::kGpu;

// One file loaded on the CPU and on the GPU.
struct EnginePair {
  OnnxModel cpu, gpu;
  explicit EnginePair(const std::string& bytes, const std::string& name)
      : cpu(OnnxModel::from_bytes(bytes, Device::cpu(), name)), gpu(OnnxModel::from_bytes(bytes, kGpu, name)) {}
};

std::string classifier_bytes(const std::string& type, const std::string& input_dtype = "f32") {
  ModelConfig c;
  c.type = type;
  auto model = create_model(c);
  model->build(Device::cpu(), 7);
  ExportOptions opt;
  opt.input_dtype = input_dtype;
  if (input_dtype == "u8") opt.x_scale = 1.0 / 255, opt.x_shift = -0.5;  // a Mul and an Add of scalars
  return export_onnx(*model, opt).bytes();
}

// Every output of the GPU run against the CPU's: floats within `rel`, integers (argmax) equal
// except where the CPU's two candidates score within `rel` (a near tie may break either way).
void expect_same_outputs(const EnginePair& e, const std::vector<Tensor>& inputs, float rel, const std::string& what) {
  const std::vector<Tensor> want = e.cpu.run(inputs), got = e.gpu.run(inputs);
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t k = 0; k < want.size(); ++k) {
    ASSERT_EQ(got[k].device(), kGpu) << what;
    ASSERT_EQ(want[k].shape(), got[k].shape()) << what << " output " << k;
    const std::string out = what + " output '" + e.cpu.outputs()[k].name + "'";
    if (want[k].dtype() == DType::f32) {
      test::expect_close(want[k], got[k], rel, out);
      continue;
    }
    ASSERT_EQ(want[k].dtype(), DType::i64) << out;
    const std::vector<int64_t> w = want[k].to_vector<int64_t>(), g = got[k].to_vector<int64_t>();
    const std::vector<float> scores = want[0].dtype() == DType::f32 ? want[0].to_vector<float>() : std::vector<float>{};
    const int64_t classes = want[0].dim(-1);
    for (size_t i = 0; i < w.size(); ++i) {
      if (w[i] == g[i]) continue;
      const bool near_tie =
          !scores.empty() && std::fabs(scores[i * classes + w[i]] - scores[i * classes + g[i]]) <= rel;
      EXPECT_TRUE(near_tie) << out << ": row " << i << " cpu " << w[i] << " cuda " << g[i];
    }
  }
}

TEST(OnnxEngineCuda, MlpAndCnnMatchTheCpuForU8AndF32Inputs) {
  DTRAIN_SKIP_WITHOUT_GPU();
  Generator g(RngKey{41, 0, static_cast<uint32_t>(RngPurpose::test)});
  for (const std::string type : {"mlp", "cnn"}) {
    const ModelConfig c = [&] {
      ModelConfig m;
      m.type = type;
      return m;
    }();
    const EnginePair u8(classifier_bytes(type, "u8"), type + "_u8.onnx"), f32(classifier_bytes(type), type + ".onnx");
    for (int64_t batch : {1, 7, 64}) {
      const std::string what = type + " batch " + std::to_string(batch);
      expect_same_outputs(u8, {test::random_u8(test::batch_shape(c, batch), g)}, 1e-4f, what + " u8");
      expect_same_outputs(f32, {Tensor::randn(test::batch_shape(c, batch), 0.0f, 1.0f, g)}, 1e-4f, what + " f32");
    }
  }
}

TEST(OnnxEngineCuda, EveryLayerTestModelMatchesTheCpu) {
  DTRAIN_SKIP_WITHOUT_GPU();
  Generator g(RngKey{42, 0, static_cast<uint32_t>(RngPurpose::test)});
  const ModelConfig image = test::image_test_config(), tokens = test::tokens_test_config();
  const EnginePair image_engines(export_onnx(*test::make_test_model(image, 3), ExportOptions{}).bytes(), "image.onnx");
  const EnginePair token_engines(export_onnx(*test::make_test_model(tokens, 4), ExportOptions{}).bytes(),
                                 "tokens.onnx");
  for (int64_t batch : {1, 5}) {
    expect_same_outputs(image_engines, {Tensor::randn(test::batch_shape(image, batch), 0.0f, 1.0f, g)}, 1e-4f,
                        "every image layer, batch " + std::to_string(batch));
    expect_same_outputs(token_engines, {test::random_ids(test::batch_shape(tokens, batch), 20, g)}, 1e-4f,
                        "every token layer, batch " + std::to_string(batch));
  }
}

TEST(OnnxEngineCuda, GptLogitsMatchTheCpuAtEveryLength) {
  DTRAIN_SKIP_WITHOUT_GPU();
  auto model = test::make_test_model(test::gpt_test_config(16), 43);
  const EnginePair e(export_onnx(*model, ExportOptions{}).bytes(), "gpt.onnx");
  Generator g(RngKey{43, 0, static_cast<uint32_t>(RngPurpose::test)});
  for (int64_t batch : {1, 3})
    for (int64_t t : {1, 5, 16})
      expect_same_outputs(e, {test::random_ids(Shape{batch, t}, 256, g)}, 1e-4f,
                          "gpt batch " + std::to_string(batch) + " length " + std::to_string(t));
}

// model_with_past.onnx: the prompt, then one token per call on the cache, on both devices; the
// caches the GPU returns stay on the GPU and go back in.
TEST(OnnxEngineCuda, GptDecodingWithThePastMatchesTheCpu) {
  DTRAIN_SKIP_WITHOUT_GPU();
  auto model = test::make_test_model(test::gpt_test_config(16), 44);
  const EnginePair e(export_onnx_with_past(*model, ExportOptions{}).bytes(), "gpt_with_past.onnx");
  const std::vector<int64_t> prompt = {3, 1, 4, 1, 5};
  test::CachedRun want = test::run_with_past(e.cpu, test::ids_tensor(prompt), test::ids_tensor({0, 1, 2, 3, 4}),
                                             test::ids_tensor({1, 1, 1, 1, 1}), test::empty_cache(e.cpu, 1));
  test::CachedRun got = test::run_with_past(e.gpu, test::ids_tensor(prompt), test::ids_tensor({0, 1, 2, 3, 4}),
                                            test::ids_tensor({1, 1, 1, 1, 1}), test::empty_cache(e.gpu, 1));
  for (int64_t p = 5; p < 16; ++p) {
    const std::string what = "position " + std::to_string(p);
    test::expect_close(want.logits, got.logits, 1e-4f, what + " logits");
    ASSERT_EQ(want.cache.size(), got.cache.size());
    for (size_t k = 0; k < want.cache.size(); ++k) {
      ASSERT_EQ(got.cache[k].device(), kGpu) << what;
      test::expect_close(want.cache[k], got.cache[k], 1e-4f, what + " cache " + std::to_string(k));
    }
    const int64_t next = test::last_argmax(want.logits);
    const Tensor ids = test::ids_tensor({next}), position = test::ids_tensor({p});
    const Tensor mask = test::ids_tensor(std::vector<int64_t>(static_cast<size_t>(p + 1), 1));
    want = test::run_with_past(e.cpu, ids, position, mask, want.cache);
    got = test::run_with_past(e.gpu, ids, position, mask, got.cache);
  }
}

// A classifier's run reads its scalars (the input scale and shift) from the host copies kept at
// load: the host waits for the device once, to copy the input in, and not for any output.
TEST(OnnxEngineCuda, AClassifierRunWaitsForTheDeviceOnlyToCopyItsInputIn) {
  DTRAIN_SKIP_WITHOUT_GPU();
  const OnnxModel m = OnnxModel::from_bytes(classifier_bytes("mlp", "u8"), kGpu, "mlp.onnx");
  ASSERT_FALSE(m.host_constants().empty());
  const Tensor x = Tensor::zeros(Shape{8, 1, 28, 28}, DType::u8);
  m.run({x});  // warm-up: cuBLAS handles, the block cache
  const int64_t before = gpu::host_waits();
  const std::vector<Tensor> out = m.run({x});
  EXPECT_EQ(gpu::host_waits() - before, 1) << "a run should wait only for its input's copy";
  EXPECT_EQ(out[0].device(), kGpu);
}

// dtrain-serve's workers: each thread on its own stream, all running the same engines at once,
// every answer the CPU's (the device block cache hands a freed block only to its own stream).
TEST(OnnxEngineCuda, ThreadsOnTheirOwnStreamsRunTheSameEnginesAtOnce) {
  DTRAIN_SKIP_WITHOUT_GPU();
  const EnginePair cnn(classifier_bytes("cnn"), "cnn.onnx");
  auto gpt_model = test::make_test_model(test::gpt_test_config(16), 45);
  const EnginePair gpt(export_onnx(*gpt_model, ExportOptions{}).bytes(), "gpt.onnx");
  ModelConfig c;
  c.type = "cnn";
  constexpr int kThreads = 4, kRounds = 8;
  std::vector<std::vector<Tensor>> cnn_inputs(kThreads), gpt_inputs(kThreads);
  std::vector<std::vector<Tensor>> cnn_want(kThreads), gpt_want(kThreads);
  Generator g(RngKey{45, 0, static_cast<uint32_t>(RngPurpose::test)});
  for (int k = 0; k < kThreads; ++k)
    for (int r = 0; r < kRounds; ++r) {
      cnn_inputs[k].push_back(Tensor::randn(test::batch_shape(c, 1 + (k + r) % 9), 0.0f, 1.0f, g));
      gpt_inputs[k].push_back(test::random_ids(Shape{1 + k % 2, 1 + (3 * k + r) % 16}, 256, g));
      cnn_want[k].push_back(cnn.cpu.run({cnn_inputs[k].back()})[0]);
      gpt_want[k].push_back(gpt.cpu.run({gpt_inputs[k].back()})[0]);
    }
  std::vector<std::vector<Tensor>> cnn_got(kThreads), gpt_got(kThreads);
  std::vector<std::thread> threads;
  for (int k = 0; k < kThreads; ++k)
    threads.emplace_back([&, k] {
      gpu::StreamScope scope(kGpu.index);
      for (int r = 0; r < kRounds; ++r) {
        cnn_got[k].push_back(cnn.gpu.run({cnn_inputs[k][r]})[0].to(Device::cpu()));
        gpt_got[k].push_back(gpt.gpu.run({gpt_inputs[k][r]})[0].to(Device::cpu()));
      }
    });
  for (std::thread& t : threads) t.join();
  for (int k = 0; k < kThreads; ++k)
    for (int r = 0; r < kRounds; ++r) {
      const std::string what = "thread " + std::to_string(k) + " round " + std::to_string(r);
      test::expect_close(cnn_want[k][r], cnn_got[k][r], 1e-4f, what + " cnn");
      test::expect_close(gpt_want[k][r], gpt_got[k][r], 1e-4f, what + " gpt");
    }
}

}  // namespace
}  // namespace dtrain
