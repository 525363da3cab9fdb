// `dtrain checkpoint verify PATH...`: reads every dataset and the attributes of each checkpoint and
// checks them against the checksums written with them; prints each part's status.
#include <cstdio>
#include <string>
#include <vector>

#include "launch/checkpoint.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace dtrain {
namespace {

const char* kCheckpointUsage =
    "usage: dtrain checkpoint verify CKPT.h5 [CKPT.h5 ...]\n\n"
    "Reads each checkpoint whole and checks every dataset and the attributes against the checksums\n"
    "written with them (format 2). Prints one line per part; exits 0 when every file verifies, 1 when\n"
    "one is damaged, unreadable or has no checksums (format 1).\n";

const CommandUsage kCheckpoint{"checkpoint verify", kCheckpointUsage};

// Prints the report of one file; returns whether it verified.
bool print_report(const CheckpointReport& r) {
  if (!r.error.empty()) {
    std::printf("%s: UNREADABLE: %s\n", r.path.c_str(), r.error.c_str());
    return false;
  }
  std::printf("%s (format %lld, step %lld)\n", r.path.c_str(), static_cast<long long>(r.format),
              static_cast<long long>(r.step));
  int damaged = 0;
  for (const CheckpointCheck& c : r.parts) {
    damaged += !c.problem.empty();
    std::printf("  %-8s %s  %s%s%s\n", c.problem.empty() ? "ok" : "DAMAGED", c.name.c_str(), c.what.c_str(),
                c.problem.empty() ? "" : ": ", c.problem.c_str());
  }
  if (r.format < 2) {
    std::printf("%s: NOT VERIFIED: written without checksums (format %lld); it read back whole\n", r.path.c_str(),
                static_cast<long long>(r.format));
    return false;
  }
  if (damaged == 0) {
    std::printf("%s: ok (%zu parts verified)\n", r.path.c_str(), r.parts.size());
    return true;
  }
  std::printf("%s: DAMAGED (%d of %zu parts): do not resume or export from this file\n", r.path.c_str(), damaged,
              r.parts.size());
  return false;
}

}  // namespace

int cmd_checkpoint(const std::vector<std::string>& args) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::printf("%s", kCheckpointUsage);
    return 0;
  }
  if (args.empty() || args[0] != "verify")
    return kCheckpoint.error(args.empty() ? "missing subcommand (verify)"
                                          : "unknown subcommand '" + args[0] + "' (expected verify)");
  if (args.size() < 2) return kCheckpoint.error("verify needs at least one checkpoint file");
  bool all_ok = true;
  for (size_t i = 1; i < args.size(); ++i) all_ok = print_report(verify_checkpoint(args[i])) && all_ok;
  return all_ok ? 0 : 1;
}

}  // namespace dtrain
