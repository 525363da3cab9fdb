// dtrain train's configuration: INI + command line, defaults, and errors that name the key.
#include "launch/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "core/error.h"

namespace dtrain {
namespace {

std::string error_of(const std::vector<std::string>& args) {
  try {
    parse_train_args(args);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class ConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("dtrain_config_test_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".ini"))
                .string();
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void write(const std::string& text) { std::ofstream(path_) << text; }
  std::string path_;
};

TEST(Config, DefaultsWithoutArguments) {
  const TrainArgs a = parse_train_args({});
  EXPECT_FALSE(a.help);
  EXPECT_EQ(a.config.model.type, "mlp");
  EXPECT_TRUE(a.config.model.input_shape.empty());  // auto: from the data
  EXPECT_EQ(a.config.model.num_classes, 0);
  EXPECT_EQ(a.config.train.batch_size, 64);
  EXPECT_EQ(a.config.checkpoint.resume, "none");
  EXPECT_EQ(a.config.checkpoint_dir(), "run/ckpt");
}

TEST(Config, HelpListsEveryKeyWithItsDefault) {
  const TrainArgs a = parse_train_args({"--help"});
  ASSERT_TRUE(a.help);
  for (const char* key :
       {"model.type", "model.hidden", "data.train", "optim.lr", "optim.schedule", "train.epochs", "train.accumulation",
        "comm.bucket_mb", "comm.timeout_s", "checkpoint.every", "checkpoint.keep_last", "log.dir", "log.trace"})
    EXPECT_NE(a.help_text.find(std::string("--") + key), std::string::npos) << key;
  EXPECT_NE(a.help_text.find("(=256,128)"), std::string::npos);
}

TEST_F(ConfigFile, IniValuesAndCommandLineOverrides) {
  write("[model]\ntype = cnn\nhidden = 32, 16\n[optim]\ntype = adamw\nlr = 0.002  # comment\n[train]\nepochs = 3\n");
  const TrainArgs a = parse_train_args(
      {"--config", path_, "--train.epochs=7", "--optim.momentum", "0.5", "--resume", "auto", "--trace", "t.json"});
  EXPECT_EQ(a.config.model.type, "cnn");
  EXPECT_EQ(a.config.model.hidden, (std::vector<int64_t>{32, 16}));
  EXPECT_EQ(a.config.optim.type, "adamw");
  EXPECT_FLOAT_EQ(a.config.optim.lr, 0.002f);
  EXPECT_EQ(a.config.train.epochs, 7);  // the command line wins
  EXPECT_FLOAT_EQ(a.config.optim.momentum, 0.5f);
  EXPECT_EQ(a.config.checkpoint.resume, "auto");
  EXPECT_EQ(a.config.log.trace, "t.json");
  EXPECT_EQ(a.config.source, path_);
}

TEST_F(ConfigFile, UnknownIniKeyIsAnErrorNamingFileAndKey) {
  write("[train]\nepochs = 3\nbatchsize = 4\n");
  const std::string e = error_of({"--config", path_});
  EXPECT_NE(e.find(path_), std::string::npos) << e;
  EXPECT_NE(e.find("train.batchsize"), std::string::npos) << e;
}

TEST(Config, UnknownCommandLineKeyIsAnError) {
  const std::string e = error_of({"--train.epoch=3"});
  EXPECT_NE(e.find("train.epoch"), std::string::npos) << e;
}

TEST(Config, BadValuesNameTheKey) {
  EXPECT_NE(error_of({"--train.epochs=ten"}).find("train.epochs: 'ten' is not an integer"), std::string::npos);
  EXPECT_NE(error_of({"--optim.lr=fast"}).find("optim.lr"), std::string::npos);
  EXPECT_NE(error_of({"--data.shuffle=maybe"}).find("data.shuffle"), std::string::npos);
  EXPECT_NE(error_of({"--model.hidden=12,x"}).find("model.hidden"), std::string::npos);
  EXPECT_NE(error_of({"--optim.type=lion"}).find("optim.type: 'lion' is not one of sgd | adam | adamw | rmsprop"),
            std::string::npos);
  EXPECT_NE(error_of({"--model.type=resnet"}).find("model.type: 'resnet' is not a registered model"),
            std::string::npos);
  EXPECT_NE(error_of({"--train.batch_size=0"}).find("train.batch_size"), std::string::npos);
  EXPECT_NE(error_of({"--train.threads=100000"}).find("train.threads: must be 0..1024, got 100000"), std::string::npos);
  EXPECT_NE(error_of({"--train.device=tpu"}).find("train.device"), std::string::npos);
  EXPECT_NE(error_of({"--comm.compress=fp8"}).find("comm.compress"), std::string::npos);
  EXPECT_NE(error_of({"--log.progress=fancy"}).find("log.progress"), std::string::npos);
  EXPECT_NE(error_of({"--model.dropout=1.5"}).find("model.dropout"), std::string::npos);
}

TEST(Config, MissingConfigFileIsNamed) {
  const std::string e = error_of({"--config", "/nonexistent/x.ini"});
  EXPECT_NE(e.find("/nonexistent/x.ini"), std::string::npos) << e;
}

TEST(Config, ResolvedIniParsesBackToTheSameConfig) {
  TrainArgs a = parse_train_args({"--model.type=cnn", "--model.input_shape=1,28,28", "--model.num_classes=10",
                                  "--model.options=width=3,depth=2", "--optim.lr=0.0123", "--data.test="});
  const std::string ini = to_ini(a.config);
  const TrainConfig back = parse_config_text(ini, "resolved");
  EXPECT_EQ(to_ini(back), ini);
  EXPECT_EQ(back.model.canonical(), a.config.model.canonical());
  EXPECT_EQ(back.model.extra.at("width"), "3");
  EXPECT_EQ(back.data.test, "");
  EXPECT_NE(ini.find("[checkpoint]\n"), std::string::npos);
}

// docs/training.md documents every key that --help lists.
TEST(Config, UserGuideDocumentsEveryKey) {
  const char* source = std::getenv("DTRAIN_SOURCE_DIR");
  if (!source) GTEST_SKIP() << "DTRAIN_SOURCE_DIR not set (ctest sets it)";
  std::ifstream in(std::string(source) + "/docs/training.md");
  ASSERT_TRUE(in) << "docs/training.md";
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream help(parse_train_args({"--help"}).help_text);
  std::string line;
  int keys = 0;
  while (std::getline(help, line)) {
    const auto at = line.find("  --");
    if (at != 0 || line.find('.') == std::string::npos) continue;
    const std::string key = line.substr(4, line.find(' ', 4) - 4);
    if (key.find('.') == std::string::npos) continue;
    ++keys;
    EXPECT_NE(doc.find("`" + key + "`"), std::string::npos) << key << " is missing from docs/training.md";
  }
  EXPECT_GT(keys, 40);
}

}  // namespace
}  // namespace dtrain
