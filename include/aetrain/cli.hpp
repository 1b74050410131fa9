// The command line (and --config TOML files) to option structs.
#pragma once

#include <stdexcept>
#include <string>
#include <variant>

#include "aetrain/config.hpp"
#include "aetrain/options.hpp"

namespace aetrain {

/// --help or --version was asked for: print `text` and exit 0.
class HelpRequested : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A parsed command line: the options of the subcommand it chose (train, encode, evaluate, pca
/// or inspect), with the --config file they came from.
using Command = std::variant<TrainConfig, EncodeConfig, EvaluateConfig, PcaConfig, InspectConfig>;

/// Parses argv. Throws Error(usage) naming the bad option, or HelpRequested.
Command parse_command_line(int argc, const char* const* argv);

}  // namespace aetrain
