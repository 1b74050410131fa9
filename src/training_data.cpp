#include "aetrain/training_data.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include "aetrain/error.hpp"
#include "block_reader.hpp"

namespace aetrain {

struct TrainingData::Impl {
  // A window: which one, its blocks' first rows within it, and this rank's rows of it.
  struct Window {
    EpochPlan plan;
    int64_t index = -1;  // of the window in plan's epoch
    BatchPlan batch{1, 1, 0, 1};
    std::vector<int64_t> offsets;         // window row of each block's first row
    AlignedVector<float> rows;            // this rank's rows, in the order they arrived
    std::vector<int32_t> slot_row;        // [slot * classes + class] -> row of `rows`
    std::vector<int64_t> data_row;        // [row of `rows`] -> its index in the data
    int64_t filled = 0;                   // rows arrived
    int64_t rounds = 0, rounds_done = 0;  // exchanges of P blocks each
    int64_t first_job = 0;                // the reader's job of this rank's block in round 0
    bool active = false;

    Window(const std::vector<Block>& blocks, int64_t window_rows, int64_t batch)
        : plan(blocks, window_rows, batch) {}
  };

  Impl(const Sources& s, const DataLayout& l, const Normalization& norm, int64_t batch,
       uint64_t seed, bool shuffle, int64_t epochs, const Comm& c, int64_t sample_block)
      : sources(s),
        layout(l),
        norm(norm),
        global_batch(batch),
        sample_block(sample_block),
        seed(seed),
        shuffle(shuffle),
        epochs(epochs),
        comm(c),
        cols(s.cols),
        rank_plan(1, batch, c.rank(), c.size(), sample_block),
        query(blocks_of(s, l), l.window_rows, batch),
        current(query.all_blocks(), l.window_rows, batch),
        next(query.all_blocks(), l.window_rows, batch),
        order(rank_plan, ceil_div(std::min(l.window_rows, s.rows), batch)),
        counts(4 * size_t(c.size())) {
    for (int r = 0; r <= c.size(); ++r)
      class_start.push_back(first_class(batch, sample_block, r, c.size()));
    lo = class_start[size_t(c.rank())];
    classes = class_start[size_t(c.rank()) + 1] - lo;
    const int64_t steps = ceil_div(std::min(layout.window_rows, sources.rows), batch);
    const int64_t blocks = int64_t(query.all_blocks().size());
    for (Window* w : {&current, &next}) {
      if (w == &next && in_memory()) break;  // one window: read once, no next
      w->rows.resize(size_t(steps * classes * cols));
      w->slot_row.resize(size_t(steps * classes));
      w->data_row.resize(size_t(steps * classes));
      w->offsets.reserve(size_t(blocks) + 1);
    }
    new_reader();
  }

  // A reader with nothing queued (the one before, if any, stops).
  void new_reader() {
    reader.reset();
    reader = std::make_unique<BlockReader>(
        sources, norm, longest_block(sources, layout.block_rows),
        ceil_div(int64_t(query.all_blocks().size()), comm.size()) + 1, global_batch, class_start);
  }

  static std::vector<Block> blocks_of(const Sources& s, const DataLayout& l) {
    std::vector<int64_t> rows;
    for (const SourceEntry& e : s.files) rows.push_back(e.rows);
    return cut_blocks(rows, l.block_rows);
  }

  bool in_memory() const { return layout.window_rows >= sources.rows; }

  EpochPlan& plan_for(int64_t epoch) {
    for (Window* w : {&current, &next})
      if (w->plan.epoch() == epoch) return w->plan;
    if (query.epoch() != epoch) query.set_epoch(seed, epoch, shuffle);
    return query;
  }

  // Makes `w` hold window `index` of `epoch`: its layout, and its blocks queued for reading.
  void open(Window& w, int64_t epoch, int64_t index) {
    if (w.plan.epoch() != epoch) w.plan.set_epoch(seed, epoch, shuffle);
    w.index = index;
    const std::span<const int64_t> blocks = w.plan.blocks(index);
    const std::vector<Block>& all = w.plan.all_blocks();
    w.offsets.assign(1, 0);
    for (int64_t b : blocks) w.offsets.push_back(w.offsets.back() + all[size_t(b)].rows);
    w.batch = BatchPlan(w.plan.rows(index), global_batch, comm.rank(), comm.size(), sample_block);
    w.filled = 0;
    w.rounds = ceil_div(int64_t(blocks.size()), comm.size());
    w.rounds_done = 0;
    w.first_job = reader->next_job();
    for (int64_t k = comm.rank(); k < int64_t(blocks.size()); k += comm.size())
      reader->submit(all[size_t(blocks[size_t(k)])], w.offsets[size_t(k)]);
    w.active = true;
  }

  // Round q of window w: each rank sends its block's rows to the ranks whose classes they fall
  // in, and files the rows it receives.
  void exchange(Window& w, bool agree) {
    const int64_t q = w.rounds_done, P = comm.size();
    const std::span<const int64_t> blocks = w.plan.blocks(w.index);
    const std::vector<Block>& all = w.plan.all_blocks();
    const int64_t count = int64_t(blocks.size()), mine = q * P + comm.rank();
    const auto rows_of = [&](int64_t k) { return all[size_t(blocks[size_t(k)])].rows; };
    int* send_counts = counts.data();
    int* send_displs = send_counts + P;
    int* recv_counts = send_displs + P;
    int* recv_displs = recv_counts + P;
    const float* send = nullptr;
    const auto fetch = [&] {
      if (mine < count) send = reader->wait(w.first_job + q);
    };
    if (agree) {
      comm.agree(fetch);
    } else {
      // Inside a step: a failed read is kept for the step's own agreement (failure()), and this
      // rank sends its slot as it is, so that no rank is left waiting in the exchange.
      try {
        fetch();
      } catch (...) {
        if (!failure) failure = std::current_exception();
        send = reader->slot(w.first_job + q);
      }
    }
    int64_t sent = 0, received = 0;
    for (int64_t d = 0; d < P; ++d) {
      const int64_t out =
          mine < count ? rows_in_classes(w.offsets[size_t(mine)], rows_of(mine), global_batch,
                                         class_start[size_t(d)], class_start[size_t(d) + 1])
                       : 0;
      const int64_t k = q * P + d;
      const int64_t in = k < count ? rows_in_classes(w.offsets[size_t(k)], rows_of(k), global_batch,
                                                     lo, lo + classes)
                                   : 0;
      send_counts[d] = int(out * cols);
      send_displs[d] = int(sent * cols);
      recv_counts[d] = int(in * cols);
      recv_displs[d] = int(received * cols);
      sent += out;
      received += in;
    }
    comm.alltoallv(send, send_counts, send_displs, w.rows.data() + w.filled * cols, recv_counts,
                   recv_displs);
    // File the rows that came: from each source in turn, its block's rows of our classes in
    // window order.
    for (int64_t s = 0; s < P; ++s) {
      const int64_t k = q * P + s;
      if (k >= count) break;
      const int64_t a = w.offsets[size_t(k)], n = rows_of(k);
      const int64_t first = all[size_t(blocks[size_t(k)])].first;
      for (int64_t i = a; i < a + n; ++i) {
        const int64_t c = i % global_batch - lo;
        if (c >= 0 && c < classes) {
          w.data_row[size_t(w.filled)] = first + (i - a);
          w.slot_row[size_t((i / global_batch) * classes + c)] = int32_t(w.filled++);
        }
      }
    }
    if (mine < count) reader->release(w.first_job + q);
    ++w.rounds_done;
  }

  // The window after `current`, if the run goes on: open it (its reading starts now).
  void open_next() {
    next.active = false;
    if (in_memory()) return;
    int64_t epoch = current.plan.epoch(), index = current.index + 1;
    if (index == current.plan.windows()) {
      ++epoch;
      index = 0;
    }
    if (epoch < epochs) open(next, epoch, index);
  }

  void start(Window& w) {
    order.reset(w.batch);
    order.set_epoch(seed, w.plan.epoch(), shuffle, w.index);
  }

  const Sources sources;
  const DataLayout layout;
  const Normalization norm;
  const int64_t global_batch;
  const int64_t sample_block;  // classes are dealt to the ranks in whole blocks of this many
  const uint64_t seed;
  const bool shuffle;
  const int64_t epochs;
  const Comm comm;
  const int64_t cols;
  std::vector<int64_t> class_start;  // rank d owns classes [class_start[d], class_start[d + 1])
  int64_t lo = 0, classes = 0;       // this rank's classes
  BatchPlan rank_plan;               // for the order's room: classes of this rank
  EpochPlan query;                   // for steps_in_epoch of epochs neither window is in
  Window current, next;
  EpochOrder order;
  std::vector<int64_t> local;  // step_rows' output
  std::vector<int> counts;     // alltoallv's counts and displacements
  std::unique_ptr<BlockReader> reader;
  std::exception_ptr failure;  // the first read that failed in gather's exchanges
};

TrainingData::TrainingData(const Sources& sources, const DataLayout& layout,
                           const Normalization& norm, int64_t global_batch, uint64_t seed,
                           bool shuffle, int64_t epochs, const Comm& comm, int64_t sample_block)
    : impl_(std::make_unique<Impl>(sources, layout, norm, global_batch, seed, shuffle, epochs, comm,
                                   sample_block)) {
  impl_->local.resize(size_t(impl_->classes));
}

TrainingData::~TrainingData() = default;

int64_t TrainingData::steps_in_epoch(int64_t epoch) { return impl_->plan_for(epoch).steps(); }
int64_t TrainingData::windows_in_epoch(int64_t epoch) { return impl_->plan_for(epoch).windows(); }
int64_t TrainingData::max_rows() const { return impl_->classes; }
std::exception_ptr TrainingData::failure() const { return impl_->failure; }
bool TrainingData::in_memory() const { return impl_->in_memory(); }
const DataLayout& TrainingData::layout() const { return impl_->layout; }

void TrainingData::seek(int64_t epoch, int64_t t) {
  Impl& d = *impl_;
  d.new_reader();  // whatever was queued for the windows before is dropped
  d.next.active = false;
  EpochPlan& plan = d.current.plan;
  if (plan.epoch() != epoch) plan.set_epoch(d.seed, epoch, d.shuffle);
  d.open(d.current, epoch, plan.window_of(t));
  while (d.current.rounds_done < d.current.rounds) d.exchange(d.current, /*agree=*/true);
  d.start(d.current);
  d.open_next();
}

int64_t TrainingData::gather(int64_t epoch, int64_t t, float* batch, int64_t* rows,
                             int64_t* positions) {
  Impl& d = *impl_;
  Impl::Window& cur = d.current;
  if (cur.plan.epoch() != epoch) {
    if (d.in_memory()) {  // the same rows, in the same layout: a new order only
      cur.plan.set_epoch(d.seed, epoch, d.shuffle);
      d.start(cur);
    }
  }
  if (cur.plan.epoch() != epoch || cur.plan.window_of(t) != cur.index) {
    Impl::Window& next = d.next;
    if (!next.active || next.plan.epoch() != epoch || next.plan.window_of(t) != next.index ||
        next.rounds_done != next.rounds)
      throw std::logic_error("training data: steps out of order");
    std::swap(d.current, d.next);
    d.start(d.current);
    d.open_next();
  }
  Impl::Window& w = d.current;
  const int64_t s = t - w.plan.first_step(w.index);
  if (d.next.active) {  // the next window's exchanges, spread over this window's steps
    const int64_t due = ceil_div((s + 1) * d.next.rounds, w.plan.steps(w.index));
    while (d.next.rounds_done < due) d.exchange(d.next, /*agree=*/false);
  }
  const int64_t n = d.order.step_rows(s, d.local.data());
  for (int64_t i = 0; i < n; ++i) {
    const int32_t r = w.slot_row[size_t(d.local[size_t(i)])];
    std::memcpy(batch + i * d.cols, w.rows.data() + int64_t(r) * d.cols,
                sizeof(float) * size_t(d.cols));
    if (rows) rows[i] = w.data_row[size_t(r)];
    if (positions) positions[i] = d.lo + d.local[size_t(i)] % d.classes;
  }
  return n;
}

std::pair<double, double> TrainingData::range() const {
  const Impl::Window& w = impl_->current;
  const float* begin = w.rows.data();
  const float* end = begin + w.filled * impl_->cols;
  if (begin == end)
    return {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()};
  const auto [lo, hi] = std::minmax_element(begin, end);
  return {*lo, *hi};
}

int64_t TrainingData::memory_bytes() const {
  const Impl& d = *impl_;
  int64_t bytes = 0;
  for (const Impl::Window* w : {&d.current, &d.next})
    bytes += int64_t(w->rows.capacity() * sizeof(float) + w->slot_row.capacity() * sizeof(int32_t) +
                     w->data_row.capacity() * sizeof(int64_t));
  return bytes;
}

}  // namespace aetrain
