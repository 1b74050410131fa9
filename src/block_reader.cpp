#include "block_reader.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace aetrain {

BlockReader::BlockReader(const Sources& sources, const Normalization& norm, int64_t max_block_rows,
                         int64_t max_jobs, int64_t global_batch, std::vector<int64_t> class_start)
    : reader_(sources),
      norm_(norm),
      cols_(sources.cols),
      batch_(global_batch),
      class_start_(std::move(class_start)),
      block_(size_t(max_block_rows * sources.cols)),
      jobs_(size_t(max_jobs)),
      next_row_(class_start_.size() - 1) {
  for (auto& slot : slots_) slot.resize(block_.size());
  thread_ = std::thread([this] { run(); });
}

BlockReader::~BlockReader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

int64_t BlockReader::submit(const Block& b, int64_t offset) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (submitted_ - consumed_ >= int64_t(jobs_.size()))
      throw std::logic_error("block reader: more jobs than room");
    jobs_[size_t(submitted_ % int64_t(jobs_.size()))] = {b, offset};
    ++submitted_;
  }
  wake_.notify_all();
  return submitted_ - 1;
}

const float* BlockReader::wait(int64_t j) {
  std::unique_lock<std::mutex> lock(mutex_);
  wake_.wait(lock, [&] { return done_ > j || (error_ && failed_job_ <= j); });
  if (done_ <= j) std::rethrow_exception(error_);
  return slots_[size_t(j % kSlots)].data();
}

void BlockReader::release(int64_t j) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    consumed_ = j + 1;
  }
  wake_.notify_all();
}

void BlockReader::run() {
  for (;;) {
    int64_t j = 0;
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] {
        return stop_ || (!error_ && done_ < submitted_ && done_ < consumed_ + kSlots);
      });
      if (stop_) return;
      j = done_;
      job = jobs_[size_t(j % int64_t(jobs_.size()))];
    }
    try {
      arrange(job, slots_[size_t(j % kSlots)].data());
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = std::current_exception();
        failed_job_ = j;
      }
      wake_.notify_all();
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = j + 1;
    }
    wake_.notify_all();
  }
}

void BlockReader::arrange(const Job& job, float* out) {
  const int64_t n = job.block.rows, ranks = int64_t(class_start_.size()) - 1;
  reader_.read(job.block.first, n, block_.data(), norm_);
  int64_t at = 0;
  for (int64_t d = 0; d < ranks; ++d) {
    next_row_[size_t(d)] = at;
    at += rows_in_classes(job.offset, n, batch_, class_start_[size_t(d)],
                          class_start_[size_t(d) + 1]);
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = (job.offset + i) % batch_;
    const int64_t d =
        std::upper_bound(class_start_.begin(), class_start_.end(), c) - class_start_.begin() - 1;
    std::memcpy(out + next_row_[size_t(d)]++ * cols_, block_.data() + i * cols_,
                sizeof(float) * size_t(cols_));
  }
}

}  // namespace aetrain
