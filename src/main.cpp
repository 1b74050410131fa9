// aetrain: parse the command line, run the subcommand, turn every failure into one
// `aetrain: error:` line and a documented exit code on every rank.
#include <iostream>
#include <string>
#include <variant>

#include "aetrain/cli.hpp"
#include "aetrain/comm.hpp"
#include "aetrain/commands.hpp"
#include "aetrain/error.hpp"
#include "aetrain/fault.hpp"
#include "aetrain/io.hpp"
#include "aetrain/log.hpp"
#include "aetrain/runtime.hpp"
#include "aetrain/trainer.hpp"

using namespace aetrain;

namespace {

// Each subcommand, run on every rank: the exit code.
int run(TrainConfig& config, const Comm& world) {
  Log log(world, config.quiet);
  config.threads = set_up_threads(config.threads, world, log);
  catch_stop_signals();
  Trainer trainer(config, world, log);
  if (trainer.run() == RunEnd::finished) return 0;
  if (config.checkpoint.empty())
    fail_replicated(ExitCode::other,
                    "stopped by a signal; no --checkpoint was given, so nothing was saved");
  return int(ExitCode::preempted);
}
// The commands that use a model or fit one: their log (evaluate's stdout is its JSON result
// alone, for scripts), their threads, their work.
template <class Config, class Work>
int run_command_with_log(Config& config, const Comm& world, bool quiet, Work work) {
  Log log(world, quiet);
  config.threads = set_up_threads(config.threads, world, log);
  work(config, world, log);
  return 0;
}
int run(EncodeConfig& config, const Comm& world) {
  return run_command_with_log(config, world, false, run_encode);
}
int run(EvaluateConfig& config, const Comm& world) {
  return run_command_with_log(config, world, true, run_evaluate);
}
int run(PcaConfig& config, const Comm& world) {
  return run_command_with_log(config, world, false, run_pca);
}
int run(InspectConfig& config, const Comm& world) {
  run_inspect(config, world);
  return 0;
}

// How long the ranks that raised a replicated error wait for the others before calling it a
// bug. They all raise it from the same values at the same point, so milliseconds apart.
constexpr double kReplicatedErrorWait = 10.0;

// One write for the whole line: mpirun's own messages must not land inside it. A newline inside
// a message (a library's text) would make it two lines: it becomes a space.
void print_error(std::string line) {
  for (char& c : line)
    if (c == '\n' || c == '\r') c = ' ';
  std::cerr << "aetrain: error: " + line + "\n" << std::flush;
}

// Prints the error once and ends every rank: collectively when all ranks saw it, else by abort
// (the other ranks may be waiting in a collective this rank will never join).
int report(const Error& e, const Comm& world) {
  const std::string rank = "rank " + std::to_string(world.rank()) + ": ";
  if (world.size() == 1) {
    print_error(e.what());
    return int(e.code());
  }
  if (e.collective()) {
    if (world.all_arrive_within(kReplicatedErrorWait)) {
      if (world.rank() == 0) print_error(e.what());
      return int(e.code());
    }
    // A rank-local condition raised as a replicated one (fail_replicated): a bug, made loud.
    print_error(rank + e.what() +
                " (internal error: raised as an error that every rank "
                "reaches, but not every rank reached it; please report this)");
    world.abort(int(e.code()));
  }
  print_error(rank + e.what());
  world.abort(int(e.code()));
}

// Parses, runs and reports: the exit code.
int run_command(int argc, char** argv, const Comm& world) {
  try {
    Command cmd = parse_command_line(argc, argv);
    return std::visit([&](auto& options) { return run(options, world); }, cmd);
  } catch (const HelpRequested& help) {
    if (world.rank() == 0) std::cout << help.what();
    return 0;
  } catch (const Error& e) {
    return report(Error(e.code(), e.what(), e.collective()), world);
  } catch (const std::exception& e) {
    return report(Error(ExitCode::other, e.what()), world);
  }
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession mpi(argc, argv);
  const Comm world = Comm::world();
  arm_faults(world.rank());
  const int code = run_command(argc, argv, world);
  // Every HDF5 object is closed by now (on every path, errors too): HDF5 shuts down before MPI
  // does. Should HDF5 hold a file it could not close, its shutdown (ours, or MPI_Finalize's)
  // would crash: the job ends by MPI_Abort instead, with the exit code of the error reported.
  if (!close_io()) {
    if (code == 0) print_error("HDF5 could not close a file that this run wrote");
    world.abort(code != 0 ? code : int(ExitCode::write_failed));
  }
  return code;
}
