#include "launch/cli.h"

#include <cstdio>
#include <iostream>

namespace po = boost::program_options;

namespace dtrain {

int CommandUsage::error(const std::string& message) const {
  const std::string name = command.substr(0, command.find(' '));
  std::fprintf(stderr, "dtrain %s: %s\n\n%s(`dtrain %s --help` lists the options)\n", name.c_str(), message.c_str(),
               usage.c_str(), command.c_str());
  return 2;
}

std::optional<int> parse_command_options(const CommandUsage& cmd, const std::vector<std::string>& args,
                                         const po::options_description& opts, po::variables_map& vm) {
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return cmd.error(e.what());
  }
  if (vm.count("help")) {
    std::cout << cmd.usage << "\n" << opts << "\n";
    return 0;
  }
  return std::nullopt;
}

}  // namespace dtrain
