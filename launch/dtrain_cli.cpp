// The `dtrain` command line: the subcommand table, --help and --version, and the one place that
// turns an exception into a one-line error and an exit code.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "launch/commands.h"

namespace dtrain {
namespace {

struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>&);
  const char* summary;
};

const Command kCommands[] = {
    {"info", cmd_info, "version, build options, GPUs, launcher environment, BLAS threads"},
    {"train", cmd_train, "train a model data-parallel (mpirun/srun/single process), checkpoint, resume"},
    {"export", cmd_export, "export a checkpoint to an ONNX model repository (int8, pruning, accuracy report)"},
    {"generate", cmd_generate, "continue a prompt with a trained language model (model.type=gpt)"},
    {"eval", cmd_eval, "accuracy of an exported ONNX model on a dataset, run by dtrain's ONNX engine"},
    {"data", cmd_data, "convert IDX/CSV/text into a dataset file, describe one (convert, info)"},
    {"checkpoint", cmd_checkpoint, "verify a checkpoint: every dataset and attribute against its checksum"},
};

void usage(FILE* out) {
  std::fprintf(out, "dtrain %s: distributed data-parallel training\n\nusage: dtrain <command> [options]\n\ncommands:\n",
               DTRAIN_VERSION);
  for (const Command& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out, "\n`dtrain <command> --help` lists a command's options.\n");
}

}  // namespace

int run_dtrain_cli(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    usage(stdout);
    return 0;
  }
  if (name == "--version") {
    std::printf("dtrain %s\n", DTRAIN_VERSION);
    return 0;
  }
  for (const Command& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(std::vector<std::string>(argv + 2, argv + argc));
    } catch (const Error& e) {
      std::fprintf(stderr, "dtrain %s: error: %s\n", c.name, e.what());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dtrain %s: internal error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "dtrain: unknown command '%s' (try `dtrain --help`)\n", name.c_str());
  return 2;
}

}  // namespace dtrain
