// aetrain: parse the command line, run the subcommand, turn every failure into one
// `aetrain: error:` line and a documented exit code on every rank.
#include <iostream>

#include "aetrain/cli.hpp"
#include "aetrain/comm.hpp"
#include "aetrain/commands.hpp"
#include "aetrain/error.hpp"
#include "aetrain/fault.hpp"
#include "aetrain/log.hpp"
#include "aetrain/runtime.hpp"
#include "aetrain/trainer.hpp"

using namespace aetrain;

namespace {

int run(Command cmd, const Comm& world) {
  if (cmd.name == "inspect") {
    run_inspect(cmd.inspect, world);
    return 0;
  }
  if (cmd.name == "train") {
    TrainConfig& config = cmd.train;
    Log log(world, config.quiet);
    config.threads = set_up_threads(config.threads, world, log);
    catch_stop_signals();
    Trainer trainer(config, world, log, cmd.config_text);
    if (trainer.run() == RunEnd::finished) return 0;
    if (config.checkpoint.empty())
      throw Error(ExitCode::other, "stopped by a signal; no --checkpoint was given, so nothing "
                                   "was saved", /*collective=*/true);
    return int(ExitCode::preempted);
  }
  // evaluate's stdout is its JSON result alone, for scripts.
  Log log(world, /*quiet=*/cmd.name == "evaluate");
  if (cmd.name == "encode") {
    cmd.encode.threads = set_up_threads(cmd.encode.threads, world, log);
    run_encode(cmd.encode, world, log);
  } else if (cmd.name == "evaluate") {
    cmd.evaluate.threads = set_up_threads(cmd.evaluate.threads, world, log);
    run_evaluate(cmd.evaluate, world, log);
  } else if (cmd.name == "pca") {
    cmd.pca.threads = set_up_threads(cmd.pca.threads, world, log);
    run_pca(cmd.pca, world, log);
  }
  return 0;
}

// Prints the error once and ends every rank: collectively when all ranks saw it, else by abort
// (the other ranks may be waiting in a collective this rank will never join).
int report(const Error& e, const Comm& world) {
  if (e.collective() || world.size() == 1) {
    if (world.rank() == 0) std::cerr << "aetrain: error: " + std::string(e.what()) + "\n" << std::flush;
    return int(e.code());
  }
  // One write for the whole line: mpirun's own messages must not land inside it.
  std::cerr << "aetrain: error: rank " + std::to_string(world.rank()) + ": " + e.what() + "\n"
            << std::flush;
  world.abort(int(e.code()));
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession mpi(argc, argv);
  const Comm world = Comm::world();
  arm_faults(world.rank());
  try {
    const Command cmd = parse_command_line(argc, argv);
    return run(cmd, world);
  } catch (const HelpRequested& help) {
    if (world.rank() == 0) std::cout << help.what();
    return 0;
  } catch (const Error& e) {
    return report(Error(e.code(), e.what(), e.collective()), world);
  } catch (const std::exception& e) {
    return report(Error(ExitCode::other, e.what()), world);
  }
}
