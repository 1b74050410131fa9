// A training step allocates nothing after the first: malloc and friends are replaced here, in
// this binary only, by counting versions that forward to glibc.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>

#include "aetrain/runtime.hpp"
#include "aetrain/trainer.hpp"
#include "support.hpp"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
}

namespace {
// Only the thread that counts: the training data's reader thread (and HDF5 inside it) may
// allocate while the step runs; the step itself may not.
thread_local bool counting = false;
std::atomic<long> allocations{0};
void count() {
  if (counting) allocations.fetch_add(1);
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
  count();
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  count();
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  count();
  return __libc_realloc(p, n);
}
void* memalign(size_t align, size_t n) {
  count();
  return __libc_memalign(align, n);
}
void* aligned_alloc(size_t align, size_t n) {
  count();
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) {
  count();
  *out = __libc_memalign(align, n);
  return *out ? 0 : ENOMEM;
}
}

namespace aetrain {
namespace {

long allocations_during(const std::function<void()>& fn) {
  allocations = 0;
  counting = true;
  fn();
  counting = false;
  return allocations.load();
}

TEST(Allocation, TheCounterSeesAllocations) {
  EXPECT_GT(allocations_during([] { std::vector<double> v(1000); }), 0);
  EXPECT_GT(allocations_during([] { Matrix<float> m(300, 300); }), 0);
}

// Steps 2.. of a run on the model `widths` over `cols`-wide rows allocate nothing, crossing
// epoch boundaries included (and with `window_rows`, windows: reading, exchanging and
// switching to the next one; with `noise`, corrupting the rows; `deterministic`, in blocks).
void expect_no_allocation(int threads, int64_t cols, std::vector<int64_t> widths, int64_t batch,
                          int64_t window_rows = 0, const std::string& noise = "none",
                          bool deterministic = false) {
  const Comm world = Comm::world();
  const std::string dir = test::temp_dir(world);
  const int64_t rows = 5 * batch + 3;  // a short last step each epoch
  if (world.rank() == 0)
    test::write_rows(dir + "/d.h5", "/train", rows, cols, test::uniform(size_t(rows * cols), 4));
  test::wait_for_all(world);
  TrainConfig c;
  c.data = {{dir + "/d.h5"}, "/train"};
  c.model.encoder_widths = std::move(widths);
  c.global_batch = batch;
  c.epochs = 100;
  c.threads = threads;
  c.noise = parse_noise(noise);
  c.deterministic = deterministic;
  if (window_rows > 0) {
    c.window_rows = window_rows;
    c.data_block_rows = batch / 2;
  }
  use_threads(threads);
  Log log(world, /*quiet=*/true);
  Trainer trainer(c, world, log);
  trainer.step();
  const long n = allocations_during([&] {
    for (int i = 0; i < 20; ++i) trainer.step();
  });
  EXPECT_EQ(n, 0) << threads << " threads";
  EXPECT_GE(trainer.state().epoch, 3);
}

TEST(Allocation, NoneInAStepOfTheModelCard) { expect_no_allocation(1, 100, {50}, 10); }
TEST(Allocation, NoneInAStepOfAWideModelOneThread) {
  // Products far above Eigen's 128 KiB stack limit for packing buffers.
  expect_no_allocation(1, 600, {512, 64}, 256);
}
TEST(Allocation, NoneInAStepOfAWideModelTwoThreads) {
  expect_no_allocation(2, 600, {512, 64}, 256);
}
TEST(Allocation, NoneInAStepInWindows) { expect_no_allocation(1, 100, {50}, 10, 20); }
TEST(Allocation, NoneInAStepWithNoise) {
  expect_no_allocation(2, 600, {512, 64}, 256, 0, "gaussian:0.1");
  expect_no_allocation(1, 100, {50}, 10, 20, "mask:0.2");
}
TEST(Allocation, NoneInADeterministicStep) {
  expect_no_allocation(2, 600, {512, 64}, 256, 0, "none", true);
  expect_no_allocation(1, 100, {50}, 10, 20, "gaussian:0.1", true);
}

}  // namespace
}  // namespace aetrain
