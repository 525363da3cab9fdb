#pragma once
// What every `dtrain` subcommand does with its options (Boost.Program_options): parse them, answer
// --help, and report usage errors the one way (`dtrain CMD: message`, the usage, exit code 2).
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace dtrain {

struct CommandUsage {
  std::string command;  // "export", "data convert", ...: the error prefix is "dtrain <first word>"
  std::string usage;    // the usage text, ending in a newline
  // Prints "dtrain CMD: message", a blank line, the usage and the --help hint to stderr; returns 2.
  int error(const std::string& message) const;
};

// The first bare word among parsed options (Boost collects it as a positional option, which a
// command without positional arguments would drop silently), or nullopt.
std::optional<std::string> bare_word(const boost::program_options::parsed_options& parsed);

// Parses `args` into `vm`. Returns an exit code when the command must stop now (0 after printing
// the usage and the options for --help, 2 after a parse error), nullopt to go on.
std::optional<int> parse_command_options(const CommandUsage& cmd, const std::vector<std::string>& args,
                                         const boost::program_options::options_description& opts,
                                         boost::program_options::variables_map& vm);

}  // namespace dtrain
