// The data layout: a function of the data and the options alone; memory only refuses.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "aetrain/error.hpp"
#include "aetrain/training_data.hpp"

namespace aetrain {
namespace {

// A table of files as the probe makes it, without files behind it (the layout reads none).
Sources fake(int64_t rows, int64_t cols, int64_t chunk_rows = 0, int files = 1) {
  Sources s;
  for (int i = 0; i < files; ++i)
    s.files.push_back({"f" + std::to_string(i) + ".h5", "/x", i * (rows / files), rows / files});
  s.rows = rows / files * files;
  s.cols = cols;
  s.chunk_rows = chunk_rows;
  s.stored_row_bytes = 4 * cols;
  s.name = "f0.h5:/x";
  return s;
}

constexpr int64_t kLots = int64_t(1) << 50;  // a budget that never refuses

DataLayout layout_of(const Sources& s, int64_t batch, int ranks, int64_t budget = kLots,
                     int64_t window_rows = 0, int64_t sample_block = 1) {
  return choose_layout(s, 0, window_rows, budget, "--data-memory", batch, ranks, Normalization{},
                       sample_block);
}

TEST(Layout, DataUpToTheDefaultWindowIsOneWindow) {
  const Sources s = fake(1000000, 500);  // 2.0e9 bytes as float32: under 2 GiB
  EXPECT_EQ(layout_of(s, 256, 1).window_rows, s.rows);
  EXPECT_EQ(layout_of(s, 256, 64).window_rows, s.rows);
}

TEST(Layout, LargerDataIsCutIntoEqualWindowsWhateverTheRanksAndMemory) {
  const Sources s = fake(10000000, 100, 1000, 4);  // 4e9 bytes: two windows of 5e6 rows
  const DataLayout one = layout_of(s, 256, 1);
  EXPECT_EQ(one.window_rows, (5000000 + 255) / 256 * 256);
  EXPECT_EQ(one.block_rows % 1000, 0);  // whole chunks
  for (int ranks : {2, 3, 64, 1000}) {
    const DataLayout other = layout_of(s, 256, ranks, kLots);
    EXPECT_EQ(other.window_rows, one.window_rows) << ranks;
    EXPECT_EQ(other.block_rows, one.block_rows) << ranks;
  }
  // A budget that holds the windows does not change them, however large or small.
  const int64_t need = data_memory_needed(s, one, 256, 4, Normalization{});
  EXPECT_EQ(layout_of(s, 256, 4, need).window_rows, one.window_rows);
  EXPECT_EQ(layout_of(s, 256, 4, 1000 * need).window_rows, one.window_rows);
}

// The refusal's remedies, parsed from its message, work when followed.
TEST(Layout, ATooSmallBudgetNamesRemediesThatWork) {
  const Sources s = fake(10000000, 100);
  const DataLayout want = layout_of(s, 256, 2);
  const int64_t budget = int64_t(512) << 20;
  std::string what;
  try {
    layout_of(s, 256, 2, budget);
    FAIL() << "a budget of 512 MiB held windows of " << want.window_rows << " rows";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::usage);
    what = e.what();
  }
  std::smatch m;
  ASSERT_TRUE(std::regex_search(what, m, std::regex("give --data-memory (\\d+)MiB"))) << what;
  const int64_t least = std::stoll(m[1]) << 20;
  EXPECT_EQ(layout_of(s, 256, 2, least).window_rows, want.window_rows);
  EXPECT_THROW(layout_of(s, 256, 2, least - (int64_t(2) << 20)), Error);
  ASSERT_TRUE(std::regex_search(what, m, std::regex("run (\\d+) ranks or more"))) << what;
  const int ranks = std::stoi(m[1]);
  EXPECT_EQ(layout_of(s, 256, ranks, budget).window_rows, want.window_rows);
  EXPECT_THROW(layout_of(s, 256, ranks - 1, budget), Error);
  ASSERT_TRUE(std::regex_search(what, m, std::regex("--window-rows (\\d+) \\(the most that fit")))
      << what;
  const int64_t fit = std::stoll(m[1]);
  EXPECT_EQ(layout_of(s, 256, 2, budget, fit).window_rows, fit);
  EXPECT_THROW(layout_of(s, 256, 2, budget, fit + 256), Error);
}

TEST(Layout, AWindowHoldsABatchAndABlock) {
  const Sources s = fake(100000, 10);
  EXPECT_THROW(layout_of(s, 256, 1, kLots, 100), Error);
  EXPECT_EQ(layout_of(s, 256, 1, kLots, 100000).window_rows, 100000);
}

}  // namespace
}  // namespace aetrain
