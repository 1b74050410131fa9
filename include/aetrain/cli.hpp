// The command line (and --config TOML files) to option structs.
#pragma once

#include <stdexcept>
#include <string>

#include "aetrain/config.hpp"
#include "aetrain/options.hpp"

namespace aetrain {

/// --help or --version was asked for: print `text` and exit 0.
class HelpRequested : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A parsed command line.
struct Command {
  std::string name;  // the subcommand: train, encode, evaluate, pca or inspect
  TrainConfig train;
  EncodeConfig encode;
  EvaluateConfig evaluate;
  PcaConfig pca;
  InspectConfig inspect;
  std::string config_file;  // the --config file read, if any
};

/// Parses argv. Throws Error(usage) naming the bad option, or HelpRequested.
Command parse_command_line(int argc, const char* const* argv);

}  // namespace aetrain
