// The command line and --config TOML files into TrainConfig.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "aetrain/cli.hpp"
#include "aetrain/error.hpp"
#include "support.hpp"

namespace aetrain {
namespace {

Command parse(std::vector<const char*> args) {
  args.insert(args.begin(), "aetrain");
  return parse_command_line(int(args.size()), args.data());
}

// The train options of a command line that must be train's.
TrainConfig parse_train(std::vector<const char*> args) {
  return std::get<TrainConfig>(parse(std::move(args)));
}

ExitCode exit_code_of(std::vector<const char*> args) {
  try {
    parse(std::move(args));
  } catch (const Error& e) {
    EXPECT_TRUE(e.collective());  // every rank parses the same argv
    return e.code();
  }
  return ExitCode::ok;
}

TEST(Cli, EveryTrainOption) {
  const Command c = parse({"train",       "--data",
                           "d.h5",        "--dataset",
                           "/x",          "--layers",
                           "512,128,32",  "--activation",
                           "tanh",        "--code-activation",
                           "linear",      "--output-activation",
                           "linear",      "--epochs",
                           "7",           "--batch-size",
                           "64",          "--lr",
                           "0.002",       "--beta1",
                           "0.8",         "--beta2",
                           "0.99",        "--epsilon",
                           "1e-8",        "--alpha",
                           "0",           "--seed",
                           "12",          "--shuffle",
                           "off",         "--threads",
                           "3",           "--val-data",
                           "v.h5",        "--val-dataset",
                           "/y",          "--checkpoint",
                           "c.h5",        "--checkpoint-every",
                           "50",          "--resume",
                           "--init-from", "i.h5",
                           "--metrics",   "m.jsonl",
                           "--log-every", "10",
                           "--quiet"});
  const TrainConfig& t = std::get<TrainConfig>(c);
  EXPECT_TRUE(std::holds_alternative<TrainConfig>(c));
  EXPECT_EQ(t.data.files, std::vector<std::string>{"d.h5"});
  EXPECT_EQ(t.data.dataset, "/x");
  EXPECT_EQ(t.model.encoder_widths, (std::vector<int64_t>{512, 128, 32}));
  EXPECT_EQ(t.model.activation, Activation::tanh);
  EXPECT_EQ(t.model.code_activation, Activation::linear);
  EXPECT_EQ(t.model.output_activation, Activation::linear);
  EXPECT_EQ(t.epochs, 7);
  EXPECT_EQ(t.global_batch, 64);
  EXPECT_DOUBLE_EQ(t.adam.learning_rate, 0.002);
  EXPECT_DOUBLE_EQ(t.adam.beta1, 0.8);
  EXPECT_DOUBLE_EQ(t.adam.beta2, 0.99);
  EXPECT_DOUBLE_EQ(t.adam.epsilon, 1e-8);
  EXPECT_EQ(t.seed, 12u);
  EXPECT_FALSE(t.shuffle);
  EXPECT_EQ(t.threads, 3);
  EXPECT_EQ(t.val.files, std::vector<std::string>{"v.h5"});
  EXPECT_EQ(t.val.dataset, "/y");
  EXPECT_EQ(t.checkpoint, "c.h5");
  EXPECT_EQ(t.checkpoint_every, 50);
  EXPECT_TRUE(t.resume);
  EXPECT_EQ(t.init_from, "i.h5");
  EXPECT_EQ(t.metrics, "m.jsonl");
  EXPECT_EQ(t.log_every, 10);
  EXPECT_TRUE(t.quiet);
}

TEST(Cli, DefaultsFollowTheModelCardThenKeras) {
  const TrainConfig t = parse_train({"train", "--data", "d.h5", "--layers", "50"});
  EXPECT_EQ(t.data.dataset, "/train");
  EXPECT_EQ(t.model.activation, Activation::relu);
  EXPECT_EQ(t.model.code_activation, Activation::relu);  // follows --activation
  EXPECT_EQ(t.model.output_activation, Activation::sigmoid);
  EXPECT_EQ(t.global_batch, 10);
  EXPECT_EQ(t.epochs, 1);
  EXPECT_DOUBLE_EQ(t.adam.learning_rate, 1e-3);
  EXPECT_DOUBLE_EQ(t.adam.beta1, 0.9);
  EXPECT_DOUBLE_EQ(t.adam.beta2, 0.999);
  EXPECT_DOUBLE_EQ(t.adam.epsilon, 1e-7);
  EXPECT_DOUBLE_EQ(t.alpha, 0.0);
  EXPECT_TRUE(t.shuffle);
  EXPECT_EQ(t.threads, 0);
  EXPECT_TRUE(t.val.files.empty());
  EXPECT_FALSE(t.resume);
  EXPECT_EQ(parse_train({"train", "--data", "d.h5", "--layers", "8", "--activation", "tanh"})
                .model.code_activation,
            Activation::tanh);
}

TEST(Cli, ValidationDataDefaults) {
  TrainConfig t =
      parse_train({"train", "--data", "d.h5", "--layers", "8", "--val-dataset", "/test"});
  EXPECT_EQ(t.val.files, std::vector<std::string>{"d.h5"});
  EXPECT_EQ(t.val.dataset, "/test");
  t = parse_train(
      {"train", "--data", "d.h5", "--dataset", "/a", "--layers", "8", "--val-data", "v.h5"});
  EXPECT_EQ(t.val.files, std::vector<std::string>{"v.h5"});
  EXPECT_EQ(t.val.dataset, "/a");
}

TEST(Cli, TomlFileAndFlagsOverridingIt) {
  const std::string dir = test::temp_dir(Comm::self());
  const std::string path = dir + "/run.toml";
  std::ofstream(path) << "# a run\n"
                         "data = \"f.h5\"\n"
                         "dataset = \"/train\"\n"
                         "layers = [784, 64]\n"
                         "epochs = 15\n"
                         "batch-size = 256\n"
                         "lr = 0.0005\n"
                         "shuffle = \"off\"\n"
                         "resume = true\n"
                         "checkpoint = \"ck.h5\"\n";
  const TrainConfig t =
      parse_train({"train", "--config", path.c_str(), "--epochs", "3", "--layers", "100,10"});
  EXPECT_EQ(t.data.files, std::vector<std::string>{"f.h5"});
  EXPECT_EQ(t.epochs, 3);  // the flag wins
  EXPECT_EQ(t.model.encoder_widths, (std::vector<int64_t>{100, 10}));
  EXPECT_EQ(t.global_batch, 256);
  EXPECT_DOUBLE_EQ(t.adam.learning_rate, 0.0005);
  EXPECT_FALSE(t.shuffle);
  EXPECT_TRUE(t.resume);
  EXPECT_EQ(t.checkpoint, "ck.h5");
  const TrainConfig from_file = parse_train({"train", "--config", path.c_str()});
  EXPECT_EQ(from_file.model.encoder_widths, (std::vector<int64_t>{784, 64}));
  EXPECT_EQ(from_file.epochs, 15);
}

TEST(Cli, EffectiveConfigurationRoundTripsThroughToml) {
  const Command c = parse({"train", "--data", "d \"quoted\".h5", "--layers", "30,20,10",
                           "--activation", "tanh", "--lr", "0.0003", "--seed", "99",
                           "--val-dataset", "/v", "--checkpoint", "c.h5", "--threads", "2"});
  const std::string dir = test::temp_dir(Comm::self());
  const std::string path = dir + "/effective.toml";
  std::ofstream(path) << to_toml(std::get<TrainConfig>(c));
  const Command back = parse({"train", "--config", path.c_str()});
  EXPECT_EQ(to_toml(std::get<TrainConfig>(back)), to_toml(std::get<TrainConfig>(c)));
  EXPECT_EQ(std::get<TrainConfig>(back).data.files, std::vector<std::string>{"d \"quoted\".h5"});
  EXPECT_DOUBLE_EQ(std::get<TrainConfig>(back).adam.learning_rate, 0.0003);
  EXPECT_EQ(std::get<TrainConfig>(back).seed, 99u);
}

// Every option of `train --help`, set to a value other than its default, survives the effective
// configuration that checkpoints store (to_toml, read back with --config). Adding an option
// without a row in the option table, or without a line here, fails this test.
// Every train option, each set to a value other than its default.
const std::vector<const char*>& every_train_option() {
  static const std::vector<const char*> args = {
      "train", "--data", "d.h5", "runs/*.h5", "@more.txt", "--dataset", "/x", "--layers",
      "30,20,10", "--activation", "tanh", "--code-activation", "linear", "--output-activation",
      "relu", "--normalize", "minmax", "--epochs", "7", "--batch-size", "64", "--lr", "0.002",
      "--beta1", "0.8", "--beta2", "0.99", "--epsilon", "1e-8", "--alpha", "0.25", "--seed", "12",
      "--shuffle", "off", "--threads", "3", "--val-data", "v.h5", "--val-dataset", "/y",
      "--checkpoint", "c.h5", "--checkpoint-every", "50", "--keep", "3", "--check-replicas", "5",
      "--init-from", "i.h5", "--metrics", "m.jsonl", "--data-block-rows", "100", "--window-rows",
      "1000", "--data-memory", "1.5GiB", "--log-every", "10", "--lr-schedule", "cosine",
      "--warmup-steps", "100", "--min-lr", "1e-5", "--lr-step-epochs", "4", "--lr-gamma", "0.3",
      "--weight-decay", "0.01", "--clip-norm", "2.5", "--early-stop", "5", "--min-delta", "0.001",
      "--noise", "mask:0.25", "--deterministic", "--size-factor", "10000", "--transform", "log1p",
      "--features", "var:highly_variable",
      // Flags steer one run and are not stored: checked apart below.
      "--resume", "--overwrite", "--quiet"};
  return args;
}

TEST(Cli, EveryTrainOptionSurvivesTheStoredConfiguration) {
  const std::vector<const char*>& args = every_train_option();
  const Command c = parse(args);
  std::string help;
  try {
    parse({"train", "--help"});
  } catch (const HelpRequested& h) {
    help = h.what();
  }
  std::istringstream lines(help);
  int options = 0;
  for (std::string line; std::getline(lines, line);) {
    const size_t at = line.find_first_not_of(' ');
    if (at == std::string::npos || line.compare(at, 2, "--") != 0) continue;  // not an option
    const std::string name = line.substr(at, line.find(' ', at) - at);
    if (name == "--config") continue;
    ++options;
    EXPECT_NE(std::find_if(args.begin(), args.end(), [&](const char* a) { return name == a; }),
              args.end())
        << name << " is in --help but not in this test";
  }
  EXPECT_GE(options, 28);  // the help text was read
  EXPECT_EQ(std::get<TrainConfig>(c).data.files,
            (std::vector<std::string>{"d.h5", "runs/*.h5", "@more.txt"}));
  EXPECT_EQ(std::get<TrainConfig>(c).data_memory, int64_t(1536) << 20);
  const TrainConfig defaults = parse_train({"train", "--data", "d.h5", "--layers", "8"});
  EXPECT_NE(std::get<TrainConfig>(c).model, defaults.model);
  EXPECT_NE(std::get<TrainConfig>(c).adam, defaults.adam);
  EXPECT_NE(std::get<TrainConfig>(c).schedule, defaults.schedule);
  const std::string dir = test::temp_dir(Comm::self());
  const std::string path = dir + "/every.toml";
  std::ofstream(path) << to_toml(std::get<TrainConfig>(c));
  TrainConfig back = parse_train({"train", "--config", path.c_str()});
  EXPECT_FALSE(back.resume);
  EXPECT_FALSE(back.overwrite);
  EXPECT_FALSE(back.quiet);
  EXPECT_EQ(back.config_file, path);  // where they came from
  back.config_file.clear();
  back.resume = back.overwrite = back.quiet = true;
  EXPECT_TRUE(back == std::get<TrainConfig>(c)) << to_toml(std::get<TrainConfig>(c));
}

// The stored configuration reads back through the option table as --config reads it, and
// every option has the resume rule docs/checkpoint.md gives it.
TEST(Cli, EveryTrainOptionHasItsResumeRule) {
  const Command c = parse(every_train_option());
  const TrainConfig defaults = parse_train({"train", "--data", "d.h5", "--layers", "8"});
  TrainConfig back = train_config_from_toml(to_toml(std::get<TrainConfig>(c)));
  back.resume = back.overwrite = back.quiet = true;
  EXPECT_TRUE(back == std::get<TrainConfig>(c)) << to_toml(std::get<TrainConfig>(c));
  EXPECT_TRUE(changed_options(std::get<TrainConfig>(c), back).empty());
  const std::map<std::string, ResumeRule> rules = {{"--data", ResumeRule::must_match},
                                                   {"--dataset", ResumeRule::must_match},
                                                   {"--layers", ResumeRule::model},
                                                   {"--activation", ResumeRule::model},
                                                   {"--code-activation", ResumeRule::model},
                                                   {"--output-activation", ResumeRule::model},
                                                   {"--normalize", ResumeRule::model},
                                                   {"--size-factor", ResumeRule::model},
                                                   {"--transform", ResumeRule::model},
                                                   {"--features", ResumeRule::model},
                                                   {"--epochs", ResumeRule::notice},
                                                   {"--batch-size", ResumeRule::must_match},
                                                   {"--lr", ResumeRule::notice},
                                                   {"--beta1", ResumeRule::must_match},
                                                   {"--beta2", ResumeRule::must_match},
                                                   {"--epsilon", ResumeRule::must_match},
                                                   {"--lr-schedule", ResumeRule::must_match},
                                                   {"--warmup-steps", ResumeRule::must_match},
                                                   {"--min-lr", ResumeRule::must_match},
                                                   {"--lr-step-epochs", ResumeRule::must_match},
                                                   {"--lr-gamma", ResumeRule::must_match},
                                                   {"--weight-decay", ResumeRule::must_match},
                                                   {"--clip-norm", ResumeRule::must_match},
                                                   {"--early-stop", ResumeRule::must_match},
                                                   {"--min-delta", ResumeRule::must_match},
                                                   {"--noise", ResumeRule::must_match},
                                                   {"--deterministic", ResumeRule::must_match},
                                                   {"--alpha", ResumeRule::must_match},
                                                   {"--seed", ResumeRule::must_match},
                                                   {"--shuffle", ResumeRule::must_match},
                                                   {"--val-data", ResumeRule::notice},
                                                   {"--val-dataset", ResumeRule::notice},
                                                   {"--data-block-rows", ResumeRule::kept},
                                                   {"--window-rows", ResumeRule::kept}};
  // Every option differs from its default in `c`: those with a rule are reported with it, the
  // free ones (threads, memory, paths, cadences, logging) never.
  std::map<std::string, ResumeRule> reported;
  for (const OptionChange& o : changed_options(defaults, std::get<TrainConfig>(c))) {
    EXPECT_FALSE(o.stored.empty()) << o.option;
    EXPECT_NE(o.stored, o.now) << o.option;
    reported[o.option] = o.rule;
  }
  EXPECT_EQ(reported, rules);
  // A kept option that this run leaves unset takes the file's value: not a change.
  TrainConfig unset = std::get<TrainConfig>(c);
  unset.window_rows = unset.data_block_rows = 0;
  for (const OptionChange& o : changed_options(std::get<TrainConfig>(c), unset))
    ADD_FAILURE() << o.option << " reported although left to the file";
  // Values read as a person types them.
  TrainConfig other = std::get<TrainConfig>(c);
  other.model.encoder_widths = {30, 20, 5};
  other.deterministic = false;
  const std::vector<OptionChange> two = changed_options(std::get<TrainConfig>(c), other);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].option + " " + two[0].stored + " -> " + two[0].now,
            "--layers 30,20,10 -> 30,20,5");
  EXPECT_EQ(two[1].option + " " + two[1].stored + " -> " + two[1].now, "--deterministic on -> off");
  EXPECT_THROW(train_config_from_toml("no_such_option = 3\n"), std::invalid_argument);
  EXPECT_THROW(train_config_from_toml("lr = -1\n"), std::invalid_argument);
}

TEST(Cli, DatasetOptionsNameADataset) {
  for (const char* bad : {"", "/", "//"}) {
    EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--dataset", bad}),
              ExitCode::usage);
    EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--val-dataset", bad}),
              ExitCode::usage);
    EXPECT_EQ(exit_code_of({"encode", "--model", "m.h5", "--data", "d.h5", "--out", "o.h5",
                            "--out-dataset", bad}),
              ExitCode::usage);
    for (const char* option : {"--per-sample-dataset", "--reconstruct-dataset"})
      EXPECT_EQ(exit_code_of({"evaluate", "--model", "m.h5", "--data", "d.h5", option, bad}),
                ExitCode::usage);
    EXPECT_EQ(exit_code_of({"pca", "--data", "d.h5", "--components", "2", "--out", "p.h5",
                            "--dataset", bad}),
              ExitCode::usage);
  }
  try {
    parse({"encode", "--model", "m.h5", "--data", "d.h5", "--out", "o.h5", "--out-dataset", ""});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--out-dataset: '' names no dataset; give a path such "
                                         "as /codes"),
              std::string::npos)
        << e.what();
  }
}

TEST(Cli, SizesTakeUnits) {
  const auto memory = [](const char* size) {
    return parse_train({"train", "--data", "d.h5", "--layers", "8", "--data-memory", size})
        .data_memory;
  };
  EXPECT_EQ(memory("4096"), 4096);
  EXPECT_EQ(memory("512MiB"), int64_t(512) << 20);
  EXPECT_EQ(memory("2GiB"), int64_t(2) << 30);
  EXPECT_EQ(memory("2G"), int64_t(2) << 30);  // as SLURM's --mem reads it
  EXPECT_EQ(memory("100MB"), 100000000);
  EXPECT_EQ(memory("64KiB"), 65536);
  for (const char* bad : {"0", "-1GiB", "lots", "5 GiB", "2Gb", "1e30TiB"})
    EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--data-memory", bad}),
              ExitCode::usage)
        << bad;
}

TEST(Cli, BadCommandLinesExitTwo) {
  EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--no-such-option"}),
            ExitCode::usage);
  EXPECT_EQ(exit_code_of({}), ExitCode::usage);  // no subcommand
  EXPECT_EQ(exit_code_of({"fly"}), ExitCode::usage);
  EXPECT_EQ(exit_code_of({"train", "--layers", "8"}), ExitCode::usage);   // --data missing
  EXPECT_EQ(exit_code_of({"train", "--data", "d.h5"}), ExitCode::usage);  // --layers missing
  for (const char* bad : {"0", "-5", "abc", "3.5"})
    EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--epochs", bad}),
              ExitCode::usage)
        << bad;
  for (const char* bad : {"0", "-1", "x"})
    EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--batch-size", bad}),
              ExitCode::usage)
        << bad;
  for (const char* bad : {"0", "-0.1", "fast"})
    EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--lr", bad}),
              ExitCode::usage)
        << bad;
  for (const char* bad : {"8,0", "8,-2", "8,x", ""})
    EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", bad}), ExitCode::usage) << bad;
  EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--alpha", "1.5"}),
            ExitCode::usage);
  EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--beta2", "1"}),
            ExitCode::usage);
  EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--activation", "softmax"}),
            ExitCode::usage);
  EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--shuffle", "maybe"}),
            ExitCode::usage);
  EXPECT_EQ(exit_code_of({"train", "--data", "d.h5", "--layers", "8", "--threads", "0"}),
            ExitCode::usage);
}

TEST(Cli, UnknownOrMissingTomlFileExitsTwo) {
  const std::string dir = test::temp_dir(Comm::self());
  const std::string path = dir + "/bad.toml";
  std::ofstream(path) << "data = \"f.h5\"\nlayers = [8]\nlearning_rate = 0.1\n";
  EXPECT_EQ(exit_code_of({"train", "--config", path.c_str()}), ExitCode::usage);
  EXPECT_EQ(exit_code_of({"train", "--config", (dir + "/missing.toml").c_str()}), ExitCode::usage);
}

TEST(Cli, HelpIsNotAnError) {
  try {
    parse({"train", "--help"});
    FAIL() << "no help";
  } catch (const HelpRequested& h) {
    EXPECT_NE(std::string(h.what()).find("--batch-size"), std::string::npos);
    EXPECT_NE(std::string(h.what()).find("--checkpoint-every"), std::string::npos);
  }
}

}  // namespace
}  // namespace aetrain
