// `dtrain train`: parse the configuration, then run the Trainer on every rank of the launch.
#include <cstdio>
#include <iostream>

#include "comm/communicator.h"
#include "core/error.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "launch/trainer.h"

namespace dtrain {

int cmd_train(const std::vector<std::string>& args) {
  TrainArgs parsed;
  try {
    parsed = parse_train_args(args);
  } catch (const Error& e) {
    std::fprintf(stderr, "dtrain train: error: %s\n(`dtrain train --help` lists every key and its default)\n",
                 e.what());
    return 2;
  }
  if (parsed.help) {
    std::cout << parsed.help_text;
    return 0;
  }
  install_stop_handlers();
  // A failure on any rank ends the whole job (MPI_Abort) after printing it, so no rank hangs.
  return run_or_abort([&] {
    Trainer trainer(parsed.config);
    const TrainResult r = trainer.run();
    if (trainer.communicator().rank() == 0) {
      std::printf("result: steps=%ld epoch=%ld test_accuracy=%.4f test_loss=%.4f interrupted=%s checkpoint=%s%s\n",
                  static_cast<long>(r.steps), static_cast<long>(r.epoch + 1), r.test.accuracy, r.test.loss,
                  r.interrupted ? "yes" : "no", r.checkpoint.c_str(),
                  r.skipped_steps > 0 ? (" skipped=" + std::to_string(r.skipped_steps)).c_str() : "");
      if (!r.failure.empty()) std::fprintf(stderr, "dtrain train: error: %s\n", r.failure.c_str());
      std::fflush(stdout);
      std::fflush(stderr);
    }
    // Every rank reaches the same verdict on a failed run, so all exit 1 without an abort.
    return r.failure.empty() ? 0 : 1;
  });
}

}  // namespace dtrain
