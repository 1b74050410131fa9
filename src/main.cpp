// aetrain: parse the command line, run the subcommand, turn every failure into one
// `aetrain: error:` line and a documented exit code on every rank.
#include <iostream>
#include <thread>

#include "aetrain/cli.hpp"
#include "aetrain/comm.hpp"
#include "aetrain/error.hpp"
#include "aetrain/log.hpp"
#include "aetrain/runtime.hpp"
#include "aetrain/trainer.hpp"

using namespace aetrain;

namespace {

int train(Command cmd, const Comm& world) {
  TrainConfig& config = cmd.train;
  const ThreadChoice threads = choose_threads(config.threads, world.ranks_on_node());
  config.threads = threads.threads;
  use_threads(threads.threads);
  Log log(world, config.quiet, config.metrics, /*append=*/config.resume);
  const int per_node = world.ranks_on_node() * threads.threads;
  if (per_node > int(std::thread::hardware_concurrency()))
    log.warn(std::to_string(world.ranks_on_node()) + " ranks x " +
             std::to_string(threads.threads) + " threads = " + std::to_string(per_node) +
             " exceeds this node's " + std::to_string(std::thread::hardware_concurrency()) +
             " cores: oversubscription slows every rank down (set --threads or OMP_NUM_THREADS)");
  Trainer trainer(config, world, log, cmd.config_text);
  trainer.run();
  return 0;
}

// Prints the error once and ends every rank: collectively when all ranks saw it, else by abort
// (the other ranks may be waiting in a collective this rank will never join).
int report(const Error& e, const Comm& world) {
  if (e.collective() || world.size() == 1) {
    if (world.rank() == 0) std::cerr << "aetrain: error: " << e.what() << std::endl;
    return int(e.code());
  }
  std::cerr << "aetrain: error: rank " << world.rank() << ": " << e.what() << std::endl;
  world.abort(int(e.code()));
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession mpi(argc, argv);
  const Comm world = Comm::world();
  try {
    const Command cmd = parse_command_line(argc, argv);
    return train(cmd, world);
  } catch (const HelpRequested& help) {
    if (world.rank() == 0) std::cout << help.what();
    return 0;
  } catch (const Error& e) {
    return report(Error(e.code(), e.what(), e.collective()), world);
  } catch (const std::exception& e) {
    return report(Error(ExitCode::other, e.what()), world);
  }
}
