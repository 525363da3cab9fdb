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

std::optional<std::string> bare_word(const po::parsed_options& parsed) {
  for (const po::option& o : parsed.options)
    if (o.position_key >= 0) return o.value.empty() ? std::string() : o.value.back();
  return std::nullopt;
}

std::optional<int> parse_command_options(const CommandUsage& cmd, const std::vector<std::string>& args,
                                         const po::options_description& opts, po::variables_map& vm) {
  try {
    const po::parsed_options parsed = po::command_line_parser(args).options(opts).run();
    if (const auto word = bare_word(parsed))
      return cmd.error("unexpected argument '" + *word + "' (every value goes after its --option)");
    po::store(parsed, vm);
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
