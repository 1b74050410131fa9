// The train options as the option table sees them, apart from the command line: their TOML
// text (what --config reads and checkpoints store) and what --resume makes of a changed one.
#pragma once

#include <string>
#include <vector>

#include "aetrain/config.hpp"

namespace aetrain {

/// A training configuration as TOML, with keys named like the long options.
std::string to_toml(const TrainConfig& config);

/// A stored configuration (to_toml's text, as checkpoints keep it) read back through the option
/// table, as --config reads a file. Keys it lacks (a file written before an option existed)
/// keep their defaults. Throws std::invalid_argument naming what it cannot read.
TrainConfig train_config_from_toml(const std::string& text);

/// What --resume (and --init-from) make of a train option whose value differs from the one the
/// file stores: every row of the option table has one.
enum class ResumeRule {
  model,       // describes the model: must match the file of --resume and of --init-from
  must_match,  // the checkpoint's state means nothing otherwise: refused
  kept,        // the checkpoint's value stays: an option may repeat it but not change it
  notice,      // this run's value is taken, and the run says so when it starts
  free,        // steers this run alone (paths, logging, threads, memory)
};

/// One option whose value differs: its name ("--lr"), rule, and both values as a person reads
/// them.
struct OptionChange {
  std::string option;
  ResumeRule rule;
  std::string stored, now;
};

/// Every train option whose value differs between `stored` and `now`, in the table's order,
/// leaving out `free` options and `kept` ones that `now` leaves to the file. Values are compared
/// as the stored configuration writes them.
std::vector<OptionChange> changed_options(const TrainConfig& stored, const TrainConfig& now);

}  // namespace aetrain
