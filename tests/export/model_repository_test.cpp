// export/model_repository: version numbering, never overwriting a version, atomic folders,
// config.json.
#include "export/model_repository.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <unistd.h>
#include <csignal>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/model.h"

namespace dtrain {
namespace {

namespace fs = std::filesystem;

class ModelRepository : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = fs::temp_directory_path() / ("dtrain_repo_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(repo_);
  }
  void TearDown() override { fs::remove_all(repo_); }
  static RepositoryModelConfig config(const std::string& name = "fmnist") {
    return {name,
            {{"input", DType::u8, {-1, 1, 28, 28}}},
            {{"probabilities", DType::f32, {-1, 10}}, {"class", DType::i64, {-1}}},
            32,
            {"T-shirt/top", "Trouser \"x\""}};
  }
  std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  fs::path repo_;
};

TEST_F(ModelRepository, NumbersVersionsOnePastTheNewest) {
  EXPECT_TRUE(list_model_versions(repo_.string(), "fmnist").empty());
  EXPECT_EQ(write_model_version(repo_.string(), config(), 0, "one"), 1);
  EXPECT_EQ(write_model_version(repo_.string(), config(), 0, "two"), 2);
  EXPECT_EQ(write_model_version(repo_.string(), config(), 7, "seven"), 7);
  fs::create_directories(repo_ / "fmnist" / "notes");  // not a version
  fs::create_directories(repo_ / "fmnist" / "007");    // not a canonical version number
  EXPECT_EQ(write_model_version(repo_.string(), config(), 0, "eight"), 8);
  EXPECT_EQ(list_model_versions(repo_.string(), "fmnist"), (std::vector<int64_t>{1, 2, 7, 8}));
  EXPECT_EQ(read(repo_ / "fmnist" / "2" / "model.onnx"), "two");
  EXPECT_EQ(read(repo_ / "fmnist" / "8" / "model.onnx"), "eight");
  for (const auto& e : fs::directory_iterator(repo_ / "fmnist"))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "left behind: " << e.path();
}

TEST_F(ModelRepository, RefusesToOverwriteAnExistingVersionNamingIt) {
  write_model_version(repo_.string(), config(), 3, "three");
  try {
    write_model_version(repo_.string(), config(), 3, "other");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("version 3 of model 'fmnist' already exists at " + (repo_ / "fmnist" / "3").string()),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("the next free version is 4"), std::string::npos) << msg;
  }
  EXPECT_EQ(read(repo_ / "fmnist" / "3" / "model.onnx"), "three");
}

TEST_F(ModelRepository, RejectsNamesThatAreNotPlainFolderNames) {
  for (const char* bad : {"", "../up", "a/b", ".hidden"}) {
    try {
      write_model_version(repo_.string(), config(bad), 0, "x");
      FAIL() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("is not a plain folder name"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(write_model_version(repo_.string(), config(), -1, "x"), Error);
}

TEST_F(ModelRepository, WritesConfigJsonWithKServeTypesAndBatchAxis) {
  write_model_version(repo_.string(), config(), 0, "x");
  const std::string json = read(repo_ / "fmnist" / "config.json");
  EXPECT_EQ(json, model_config_json(config()));
  EXPECT_NE(json.find("\"name\": \"fmnist\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"platform\": \"onnx\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"max_batch_size\": 32"), std::string::npos) << json;
  EXPECT_NE(json.find("{\"name\": \"input\", \"datatype\": \"UINT8\", \"shape\": [-1, 1, 28, 28]}"), std::string::npos)
      << json;
  EXPECT_NE(json.find("{\"name\": \"class\", \"datatype\": \"INT64\", \"shape\": [-1]}"), std::string::npos) << json;
  EXPECT_NE(json.find("\"labels\": [\"T-shirt/top\", \"Trouser \\\"x\\\"\"]"), std::string::npos) << json;
}

// A language model's version: model.onnx and model_with_past.onnx appear together; config.json
// describes the dynamic length (-1) and carries the sizes the server needs.
TEST_F(ModelRepository, WritesALanguageModelsGraphsAndSizes) {
  RepositoryModelConfig c{"bytes", {{"input_ids", DType::i64, {-1, -1}}}, {{"logits", DType::f32, {-1, -1, 256}}}, 8,
                          {},      LanguageModelInfo{256, 64, 2, 4, 128}};
  ExportedModel full, with_past;
  const std::string a = "full", b = "cached";
  full.parts.emplace_back(a.data(), a.size());
  with_past.parts.emplace_back(b.data(), b.size());
  EXPECT_EQ(write_model_version(repo_.string(), c, 0, full, {{kModelWithPastFile, &with_past}}), 1);
  EXPECT_EQ(read(repo_ / "bytes" / "1" / "model.onnx"), "full");
  EXPECT_EQ(read(repo_ / "bytes" / "1" / "model_with_past.onnx"), "cached");
  const std::string json = read(repo_ / "bytes" / "config.json");
  EXPECT_NE(json.find("{\"name\": \"input_ids\", \"datatype\": \"INT64\", \"shape\": [-1, -1]}"), std::string::npos)
      << json;
  EXPECT_NE(json.find("{\"name\": \"logits\", \"datatype\": \"FP32\", \"shape\": [-1, -1, 256]}"), std::string::npos)
      << json;
  EXPECT_NE(json.find("\"language_model\": {\"vocab\": 256, \"ctx\": 64, \"n_layer\": 2, \"n_head\": 4, "
                      "\"n_embd\": 128}"),
            std::string::npos)
      << json;
  EXPECT_EQ(model_config_json(config()).find("language_model"), std::string::npos);
  EXPECT_THROW(write_model_version(repo_.string(), c, 0, full, {{"../x.onnx", &with_past}}), Error);
}

// export_pipeline: one model per stage and the pipeline over them; a second export makes version
// 2 of each, the new pipeline naming the new stages.
TEST_F(ModelRepository, WritesAPipelineOverItsStages) {
  ModelConfig mc;
  mc.type = "mlp";
  mc.input_shape = Shape{8, 8};
  mc.num_classes = 4;
  mc.hidden = {16};
  auto model = create_model(mc);  // Flatten, Linear, ReLU, Linear
  model->build(Device::cpu(), 3);
  const PipelineExport p =
      export_pipeline(repo_.string(), "fm", *model, ExportOptions{}, {2}, {"a", "b", "c", "d"}, 8, 0);
  ASSERT_EQ(p.stages.size(), 2u);
  EXPECT_EQ(p.version, 1);
  EXPECT_EQ(p.stages[0].model, "fm.stage1");
  EXPECT_EQ(p.stages[1].first_layer, 2);
  EXPECT_EQ(p.stages[1].last_layer, 3);
  EXPECT_TRUE(fs::is_regular_file(repo_ / "fm.stage1" / "1" / "model.onnx"));
  EXPECT_TRUE(fs::is_regular_file(repo_ / "fm.stage2" / "1" / "model.onnx"));
  const std::string stages = read(repo_ / "fm" / "1" / "pipeline.json");
  EXPECT_NE(stages.find(R"({"model": "fm.stage2", "version": 1, "inputs": {"input": "fm.stage1.activation"})"),
            std::string::npos)
      << stages;
  const std::string json = read(repo_ / "fm" / "config.json");
  EXPECT_NE(json.find("\"platform\": \"pipeline\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"stages\": ["), std::string::npos) << json;
  EXPECT_NE(json.find("{\"name\": \"class\", \"datatype\": \"INT64\", \"shape\": [-1]}"), std::string::npos) << json;
  EXPECT_EQ(read(repo_ / "fm.stage1" / "config.json").find("\"a\""), std::string::npos)
      << "labels only on the last stage";
  const PipelineExport again = export_pipeline(repo_.string(), "fm", *model, ExportOptions{}, {2}, {}, 8, 0);
  EXPECT_EQ(again.version, 2);
  EXPECT_NE(read(repo_ / "fm" / "2" / "pipeline.json").find(R"("model": "fm.stage1", "version": 2)"),
            std::string::npos);
  EXPECT_THROW(export_pipeline(repo_.string(), "fm", *model, ExportOptions{}, {4}, {}, 8, 0), Error);
}

// A write that fails half-way (here: the file size limit, as a full disk would) removes the
// folders it created: a failed export leaves no empty model folder behind.
TEST_F(ModelRepository, AFailedWriteLeavesNoFolderBehind) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);  // the write fails with EFBIG instead of killing the process
    const rlimit limit{4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    const std::string big(64 * 1024, 'x');
    bool threw = false;
    try {
      write_model_version(repo_.string(), config(), 0, big);
    } catch (const Error& e) {
      threw = std::string(e.what()).find("File too large") != std::string::npos;
    }
    ::_exit(threw && !fs::exists(repo_) ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the failed write must throw naming EFBIG and remove " << repo_;
}

}  // namespace
}  // namespace dtrain
