// `dtrain export` and `dtrain eval` end to end through the real binary, on a checkpoint that
// `dtrain train` makes from a small Fashion-MNIST subset: versions are numbered and never
// overwritten, config.json and the metadata are written, int8 + pruning report their size ratio
// and accuracy change, and eval reproduces the accuracy export reported.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>

#include "data/convert.h"
#include "data/dataset.h"
#include "fmnist_subset.h"
#include "inference/onnx_engine.h"
#include "test_files.h"

namespace fs = std::filesystem;

namespace dtrain {
namespace {

using test::kFmnist;

std::string dtrain_binary() { return test::built_file("launch/dtrain"); }

using RunResult = test::CommandResult;

// Runs the dtrain binary with `args` (stderr folded into the output).
RunResult run_dtrain(const std::vector<std::string>& args) {
  std::string cmd = dtrain_binary();
  for (const auto& a : args) cmd += " '" + a + "'";
  return test::run_command(cmd);
}

std::string first_match(const std::string& text, const std::string& pattern) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(pattern)) ? m[1].str() : "";
}

TEST(ExportE2E, ExportsVersionsQuantizesAndEvalReproducesTheAccuracy) {
  if (!fs::exists(std::string(kFmnist) + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST not found at " << kFmnist << " (scripts/install-deps.sh installs it)";
  const fs::path dir = fs::temp_directory_path() / ("dtrain_export_e2e_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string train = (dir / "train.h5").string(), test = (dir / "test.h5").string();
  test::write_fmnist_subset("train", 2048, train);
  test::write_fmnist_subset("t10k", 500, test);

  const RunResult trained =
      run_dtrain({"train", "--data.train=" + train, "--data.test=" + test, "--model.hidden=64", "--train.batch_size=32",
                  "--train.max_steps=40", "--optim.type=adam", "--optim.lr=0.003", "--log.progress=none",
                  "--log.dir=" + (dir / "run").string()});
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const std::string ckpt = first_match(trained.output, "checkpoint=(\\S+)");
  ASSERT_FALSE(ckpt.empty()) << trained.output;
  const std::string repo = (dir / "repo").string();

  const RunResult f32 =
      run_dtrain({"export", "--checkpoint", ckpt, "--repo", repo, "--name", "fmnist", "--data", test});
  ASSERT_EQ(f32.exit_code, 0) << f32.output;
  EXPECT_NE(f32.output.find("exported " + repo + "/fmnist/1/model.onnx"), std::string::npos) << f32.output;
  const std::string accuracy = first_match(f32.output, "test accuracy \\(dtrain ONNX engine, [^)]*\\): ([0-9.]+)");
  ASSERT_FALSE(accuracy.empty()) << f32.output;

  const RunResult eval = run_dtrain({"eval", "--model", repo + "/fmnist/1/model.onnx", "--data", test});
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_EQ(first_match(eval.output, "accuracy ([0-9.]+) "), accuracy) << eval.output;
  EXPECT_NE(eval.output.find("/500)"), std::string::npos) << eval.output;

  const RunResult int8 = run_dtrain({"export", "--checkpoint", ckpt, "--repo", repo, "--name", "fmnist", "--quantize",
                                     "int8", "--prune", "0.3", "--data", test});
  ASSERT_EQ(int8.exit_code, 0) << int8.output;
  EXPECT_NE(int8.output.find("exported " + repo + "/fmnist/2/model.onnx"), std::string::npos) << int8.output;
  EXPECT_NE(int8.output.find("pruned: 30.00%"), std::string::npos) << int8.output;
  const std::string ratio = first_match(int8.output, "f32 unpruned \\(ratio ([0-9.]+)\\)");
  ASSERT_FALSE(ratio.empty()) << int8.output;
  EXPECT_LE(std::stod(ratio), 0.3) << int8.output;
  EXPECT_NE(int8.output.find("points)"), std::string::npos) << int8.output;

  const RunResult again =
      run_dtrain({"export", "--checkpoint", ckpt, "--repo", repo, "--name", "fmnist", "--version", "1"});
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("version 1 of model 'fmnist' already exists at " + repo + "/fmnist/1"), std::string::npos)
      << again.output;

  const std::string config = test::read_text(fs::path(repo) / "fmnist" / "config.json");
  EXPECT_NE(config.find("\"platform\": \"onnx\""), std::string::npos) << config;
  EXPECT_NE(config.find("{\"name\": \"input\", \"datatype\": \"UINT8\", \"shape\": [-1, 28, 28]}"), std::string::npos)
      << config;
  EXPECT_NE(config.find("\"Ankle boot\"]"), std::string::npos) << config;
  const OnnxModel model = OnnxModel::load(repo + "/fmnist/2/model.onnx");
  EXPECT_EQ(model.metadata().at("step"), "40");
  EXPECT_EQ(model.metadata().at("quantize"), "int8");
  EXPECT_NE(model.metadata().at("config").find("[model]"), std::string::npos);

  // The cnn takes [1, 28, 28] where the dataset stores [28, 28]: export and eval feed it alike.
  const RunResult cnn =
      run_dtrain({"train", "--data.train=" + train, "--data.test=" + test, "--model.type=cnn", "--train.batch_size=32",
                  "--train.max_steps=8", "--log.progress=none", "--log.dir=" + (dir / "cnn").string()});
  ASSERT_EQ(cnn.exit_code, 0) << cnn.output;
  const std::string cnn_ckpt = first_match(cnn.output, "checkpoint=(\\S+)");
  const std::string cnn_accuracy = first_match(cnn.output, "test_accuracy=([0-9.]+)");
  const RunResult cnn_export = run_dtrain({"export", "--checkpoint", cnn_ckpt, "--repo", repo, "--name", "cnn"});
  ASSERT_EQ(cnn_export.exit_code, 0) << cnn_export.output;
  EXPECT_EQ(first_match(cnn_export.output, "test accuracy \\(dtrain ONNX engine, [^)]*\\): ([0-9.]+)"), cnn_accuracy)
      << cnn.output << cnn_export.output;
  const RunResult cnn_eval = run_dtrain({"eval", "--model", repo + "/cnn/1/model.onnx", "--data", test});
  EXPECT_EQ(first_match(cnn_eval.output, "accuracy ([0-9.]+) "), cnn_accuracy) << cnn_eval.output;

  // --split-at: the cnn in three stages and the pipeline over them; bad split points name the layers.
  const RunResult split =
      run_dtrain({"export", "--checkpoint", cnn_ckpt, "--repo", repo, "--name", "cnnp", "--split-at", "2,4"});
  ASSERT_EQ(split.exit_code, 0) << split.output;
  EXPECT_NE(split.output.find("stage 3: layers 4.."), std::string::npos) << split.output;
  for (const char* f : {"/cnnp/1/pipeline.json", "/cnnp.stage1/1/model.onnx", "/cnnp.stage3/1/model.onnx"})
    EXPECT_TRUE(fs::is_regular_file(repo + f)) << f;
  const RunResult beyond =
      run_dtrain({"export", "--checkpoint", cnn_ckpt, "--repo", repo, "--name", "x", "--split-at", "99"});
  EXPECT_EQ(beyond.exit_code, 1) << beyond.output;
  EXPECT_NE(beyond.output.find("top-level layers (0 Conv2d"), std::string::npos) << beyond.output;
  EXPECT_FALSE(fs::exists(repo + "/x.stage1"));
  const RunResult order =
      run_dtrain({"export", "--checkpoint", cnn_ckpt, "--repo", repo, "--name", "x", "--split-at", "4,2"});
  EXPECT_EQ(order.exit_code, 2) << order.output;
  EXPECT_NE(order.output.find("must be increasing layer indices"), std::string::npos) << order.output;

  const RunResult usage = run_dtrain({"export", "--checkpoint", ckpt});
  EXPECT_EQ(usage.exit_code, 2) << usage.output;
  const RunResult opset = run_dtrain({"export", "--checkpoint", ckpt, "--repo", repo, "--name", "o", "--opset", "12"});
  EXPECT_EQ(opset.exit_code, 2) << opset.output;
  EXPECT_NE(opset.output.find("--opset must be 13..17, got 12"), std::string::npos) << opset.output;
  EXPECT_FALSE(fs::exists(repo + "/o"));
  // A bare word is refused by name, not dropped (export, eval, generate and data convert share the parser).
  const RunResult stray = run_dtrain({"export", "--checkpoint", ckpt, "--repo", repo, "--name", "s", "model.onnx"});
  EXPECT_EQ(stray.exit_code, 2) << stray.output;
  EXPECT_NE(stray.output.find("unexpected argument 'model.onnx'"), std::string::npos) << stray.output;
  EXPECT_FALSE(fs::exists(repo + "/s"));
  const RunResult eval_stray = run_dtrain({"eval", "--model", repo + "/fmnist/1/model.onnx", "--data", test, "x"});
  EXPECT_EQ(eval_stray.exit_code, 2) << eval_stray.output;
  if (!HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace dtrain
