#pragma once
// The `dtrain` subcommands. Each takes the arguments after its name and returns the exit code
// (0 ok, 2 usage error, 1 other failure); main() catches dtrain::Error and prints one line.
#include <string>
#include <vector>

namespace dtrain {

int cmd_info(const std::vector<std::string>& args);
int cmd_data(const std::vector<std::string>& args);  // data convert | data info
int cmd_train(const std::vector<std::string>& args);
int cmd_export(const std::vector<std::string>& args);      // checkpoint -> ONNX model repository version
int cmd_eval(const std::vector<std::string>& args);        // accuracy of an ONNX model on a dataset
int cmd_checkpoint(const std::vector<std::string>& args);  // checkpoint verify: every checksum of a file
int cmd_generate(const std::vector<std::string>& args);    // a language model's continuation of a prompt

// The whole `dtrain` command line (the commands above, --help, --version) for main(): a program
// that registers its own models first and then calls this is a complete dtrain for them
// (examples/custom-model).
int run_dtrain_cli(int argc, char** argv);

}  // namespace dtrain
