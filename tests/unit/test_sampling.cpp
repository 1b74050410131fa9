// The batch sequence is a property of (N, B, seed), never of the number of ranks P.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <vector>

#include "aetrain/sampling.hpp"
#include "support.hpp"

namespace aetrain {
namespace {

// The file rows of step t of epoch e, gathered over all P ranks, sorted.
std::vector<int64_t> rows_of_step(int64_t n, int64_t b, int p, uint64_t seed, int64_t epoch,
                                  bool shuffle, int64_t t) {
  std::vector<int64_t> rows;
  for (int r = 0; r < p; ++r) {
    BatchPlan plan(n, b, r, p);
    EpochOrder order(plan);
    order.set_epoch(seed, epoch, shuffle);
    std::vector<int64_t> local(size_t(std::max<int64_t>(1, plan.classes())));
    const int64_t k = order.step_rows(t, local.data());
    for (int64_t i = 0; i < k; ++i) rows.push_back(test::file_row(plan, local[size_t(i)]));
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

struct Case {
  int64_t n, b;
};

const Case kCases[] = {{1, 1},   {1, 10},   {7, 10},   {10, 10},   {11, 10}, {64, 8},
                       {100, 7}, {101, 64}, {257, 16}, {1000, 33}, {5, 3},   {1001, 128}};
const int kRanks[] = {1, 2, 3, 4, 7};

TEST(Sampling, EveryRowExactlyOncePerEpoch) {
  for (const Case& c : kCases)
    for (int p : kRanks)
      for (int64_t epoch : {0, 1, 5})
        for (bool shuffle : {true, false}) {
          BatchPlan plan(c.n, c.b, 0, p);
          std::vector<int> seen(size_t(c.n), 0);
          for (int64_t t = 0; t < plan.steps_per_epoch(); ++t) {
            const std::vector<int64_t> rows = rows_of_step(c.n, c.b, p, 42, epoch, shuffle, t);
            EXPECT_LE(int64_t(rows.size()), c.b);
            EXPECT_GE(int64_t(rows.size()), 1);
            for (int64_t r : rows) ++seen[size_t(r)];
          }
          for (int64_t r = 0; r < c.n; ++r)
            ASSERT_EQ(seen[size_t(r)], 1)
                << "row " << r << " N " << c.n << " B " << c.b << " P " << p << " epoch " << epoch;
        }
}

TEST(Sampling, EachStepUsesTheSameRowsForEveryRankCount) {
  for (const Case& c : kCases)
    for (int64_t epoch : {0, 3}) {
      const int64_t steps = BatchPlan(c.n, c.b, 0, 1).steps_per_epoch();
      for (int64_t t = 0; t < steps; ++t) {
        const std::vector<int64_t> one = rows_of_step(c.n, c.b, 1, 9, epoch, true, t);
        for (int p : kRanks)
          ASSERT_EQ(rows_of_step(c.n, c.b, p, 9, epoch, true, t), one)
              << "N " << c.n << " B " << c.b << " P " << p << " epoch " << epoch << " step " << t;
      }
    }
}

TEST(Sampling, ShufflingOffGivesConsecutiveRows) {
  for (const Case& c : kCases)
    for (int p : kRanks) {
      const int64_t steps = BatchPlan(c.n, c.b, 0, p).steps_per_epoch();
      for (int64_t t = 0; t < steps; ++t) {
        std::vector<int64_t> expect;
        for (int64_t r = t * c.b; r < std::min(c.n, (t + 1) * c.b); ++r) expect.push_back(r);
        ASSERT_EQ(rows_of_step(c.n, c.b, p, 1, 2, false, t), expect)
            << "N " << c.n << " B " << c.b << " P " << p << " step " << t;
      }
    }
}

TEST(Sampling, BatchesChangeFromEpochToEpochAndWithTheSeed) {
  const int64_t n = 1000, b = 10;
  auto first_batches = [&](uint64_t seed, int64_t epoch) {
    std::vector<std::vector<int64_t>> steps;
    for (int64_t t = 0; t < 5; ++t) steps.push_back(rows_of_step(n, b, 2, seed, epoch, true, t));
    return steps;
  };
  EXPECT_NE(first_batches(1, 0), first_batches(1, 1));
  EXPECT_NE(first_batches(1, 0), first_batches(2, 0));
  EXPECT_EQ(first_batches(1, 4), first_batches(1, 4));
}

TEST(Sampling, ShardsPartitionTheRowsAndAreStridedBlocks) {
  for (const Case& c : kCases)
    for (int p : kRanks) {
      std::set<int64_t> all;
      int64_t total = 0;
      for (int r = 0; r < p; ++r) {
        BatchPlan plan(c.n, c.b, r, p);
        total += test::shard_rows(plan);
        for (int64_t i = 0; i < test::shard_rows(plan); ++i) {
          const int64_t row = test::file_row(plan, i);
          EXPECT_EQ(row % c.b - plan.first_class(), i % plan.classes());  // its class
          all.insert(row);
        }
      }
      EXPECT_EQ(total, c.n);
      ASSERT_EQ(int64_t(all.size()), c.n);
      EXPECT_EQ(*all.rbegin(), c.n - 1);
    }
}

TEST(Sampling, ClassesSplitEvenlyEvenWhenBIsNotAMultipleOfP) {
  // B = 10 over P = 4: 2, 3, 2, 3 classes.
  const int64_t expect[4] = {2, 3, 2, 3};
  for (int r = 0; r < 4; ++r) EXPECT_EQ(BatchPlan(100, 10, r, 4).classes(), expect[r]);
}

TEST(Sampling, EvenSplitCoversAllRows) {
  for (int64_t n : {0, 1, 3, 10, 11})
    for (int p : {1, 2, 4, 7}) {
      int64_t next = 0;
      for (int r = 0; r < p; ++r) {
        const RowRange range = even_split(n, r, p);
        EXPECT_EQ(range.begin, next);
        next = range.end;
      }
      EXPECT_EQ(next, n);
    }
}

}  // namespace
}  // namespace aetrain

namespace aetrain {
namespace {

// Windows (docs/data.md): the dataset's rows of step t of epoch e, gathered over all P ranks,
// sorted; from the plans alone, as every rank computes them.
std::vector<int64_t> windowed_step(const std::vector<int64_t>& files, int64_t block, int64_t window,
                                   int64_t b, int p, uint64_t seed, int64_t epoch, bool shuffle,
                                   int64_t t) {
  EpochPlan plan(cut_blocks(files, block), window, b);
  plan.set_epoch(seed, epoch, shuffle);
  const int64_t w = plan.window_of(t);
  std::vector<int64_t> ids;  // window row -> dataset row
  for (int64_t k : plan.blocks(w))
    for (int64_t i = 0; i < plan.all_blocks()[size_t(k)].rows; ++i)
      ids.push_back(plan.all_blocks()[size_t(k)].first + i);
  std::vector<int64_t> rows;
  for (int r = 0; r < p; ++r) {
    BatchPlan rank(plan.rows(w), b, r, p);
    EpochOrder order(rank);
    order.set_epoch(seed, epoch, shuffle, w);
    std::vector<int64_t> local(size_t(std::max<int64_t>(1, rank.classes())));
    const int64_t n = order.step_rows(t - plan.first_step(w), local.data());
    for (int64_t i = 0; i < n; ++i)
      rows.push_back(ids[size_t(test::file_row(rank, local[size_t(i)]))]);
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

struct WindowCase {
  std::vector<int64_t> files;  // rows per file
  int64_t block, window, b;
};

// Windows that hold whole batches and windows that do not, blocks that divide the files and
// blocks that do not, files of different lengths, one window for everything.
const WindowCase kWindowCases[] = {
    {{103}, 7, 30, 10},          {{103}, 10, 40, 10},       {{40, 33, 30}, 7, 30, 10},
    {{5, 1, 17, 0, 9}, 4, 8, 3}, {{1000}, 64, 300, 32},     {{257, 256}, 16, 100, 16},
    {{60}, 7, 1000, 8},          {{12, 12, 12}, 12, 12, 5}, {{100}, 1, 10, 10}};

TEST(Windows, EveryRowExactlyOncePerEpochAndNoWindowOverflows) {
  for (const WindowCase& c : kWindowCases)
    for (bool shuffle : {true, false})
      for (int64_t epoch : {0, 1, 4}) {
        const int64_t n = std::accumulate(c.files.begin(), c.files.end(), int64_t(0));
        EpochPlan plan(cut_blocks(c.files, c.block), c.window, c.b);
        plan.set_epoch(9, epoch, shuffle);
        int64_t rows = 0;
        for (int64_t w = 0; w < plan.windows(); ++w) {
          EXPECT_LE(plan.rows(w), c.window);
          EXPECT_EQ(plan.steps(w), (plan.rows(w) + c.b - 1) / c.b);
          rows += plan.rows(w);
        }
        EXPECT_EQ(rows, n);
        for (int p : {1, 3}) {
          std::vector<int> seen(size_t(n), 0);
          for (int64_t t = 0; t < plan.steps(); ++t)
            for (int64_t r :
                 windowed_step(c.files, c.block, c.window, c.b, p, 9, epoch, shuffle, t))
              ++seen[size_t(r)];
          for (int64_t r = 0; r < n; ++r)
            ASSERT_EQ(seen[size_t(r)], 1) << "row " << r << " P " << p << " epoch " << epoch;
        }
      }
}

TEST(Windows, EachStepUsesTheSameRowsForEveryRankCount) {
  for (const WindowCase& c : kWindowCases)
    for (int64_t epoch : {0, 2}) {
      EpochPlan plan(cut_blocks(c.files, c.block), c.window, c.b);
      plan.set_epoch(3, epoch, true);
      for (int64_t t = 0; t < plan.steps(); ++t) {
        const std::vector<int64_t> one =
            windowed_step(c.files, c.block, c.window, c.b, 1, 3, epoch, true, t);
        for (int p : {2, 3, 4, 7})
          ASSERT_EQ(windowed_step(c.files, c.block, c.window, c.b, p, 3, epoch, true, t), one)
              << "step " << t << " P " << p;
      }
    }
}

TEST(Windows, OneWindowIsTheSchemeWithoutWindows) {
  // Everything in one window: the batches of BatchPlan and EpochOrder over the whole dataset.
  for (const Case& c : kCases)
    for (bool shuffle : {true, false}) {
      const int64_t steps = BatchPlan(c.n, c.b, 0, 1).steps_per_epoch();
      for (int64_t t = 0; t < steps; ++t)
        ASSERT_EQ(windowed_step({c.n}, 7, c.n, c.b, 3, 42, 1, shuffle, t),
                  rows_of_step(c.n, c.b, 3, 42, 1, shuffle, t))
            << "N " << c.n << " B " << c.b << " step " << t;
    }
}

TEST(Windows, ShufflingOffKeepsTheBlocksInOrderAndShufflingMixesThem) {
  EpochPlan plan(cut_blocks({1000}, 10), 100, 10);
  plan.set_epoch(1, 0, false);
  for (int64_t w = 0; w < plan.windows(); ++w) {
    EXPECT_EQ(plan.all_blocks()[size_t(plan.blocks(w).front())].first, 100 * w);
    EXPECT_EQ(windowed_step({1000}, 10, 100, 10, 2, 1, 0, false, plan.first_step(w))[0], 100 * w);
  }
  // Shuffled: a window draws its blocks from all over the file, and differs from epoch to epoch.
  plan.set_epoch(1, 0, true);
  const std::vector<int64_t> first(plan.blocks(0).begin(), plan.blocks(0).end());
  EXPECT_GT(first.back() - first.front(), 50);
  plan.set_epoch(1, 1, true);
  EXPECT_NE(std::vector<int64_t>(plan.blocks(0).begin(), plan.blocks(0).end()), first);
}

TEST(Windows, BlocksStayInsideTheirFile) {
  const std::vector<Block> blocks = cut_blocks({10, 0, 7, 3}, 4);
  const std::vector<std::pair<int64_t, int64_t>> expect = {{0, 4},  {4, 4},  {8, 2},
                                                           {10, 4}, {14, 3}, {17, 3}};
  ASSERT_EQ(blocks.size(), expect.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    EXPECT_EQ(blocks[i].first, expect[i].first);
    EXPECT_EQ(blocks[i].rows, expect[i].second);
  }
  EXPECT_THROW(EpochPlan(cut_blocks({10}, 5), 4, 2), std::invalid_argument);  // block > window
}

}  // namespace
}  // namespace aetrain
