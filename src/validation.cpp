#include "validation.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "aetrain/error.hpp"
#include "aetrain/sampling.hpp"

namespace aetrain {

Validation::Validation(const Sources& val, Autoencoder<float>& model, int64_t train_cols,
                       int64_t block_rows, const Comm& comm)
    : model_(model), comm_(comm), sources_(val), rows_(val.rows), block_rows_(block_rows) {
  if (val.cols != train_cols)
    fail_replicated(ExitCode::data, val.name + ": has " + std::to_string(val.cols) +
                                        " columns, the training data " +
                                        std::to_string(train_cols));
  if (block_rows_ > 0) worker_.emplace(model, block_rows_, 1);
}

double Validation::loss(const Normalization& norm) {
  if (worker_) {
    // Blocks of block_rows_ rows, each on a one-thread worker (the same bits on any rank), this
    // rank's even share of them; their losses summed in block order on every rank (each entry
    // is one rank's value, zeros elsewhere: the allreduce is exact). Early stopping then
    // decides alike on any P.
    const int64_t b = block_rows_, blocks = (rows_ + b - 1) / b;
    const RowRange share = even_split(blocks, comm_.rank(), comm_.size());
    std::vector<double> losses(size_t(blocks), 0.0);
    comm_.agree([&] {
      for_each_block(sources_, {share.begin * b, std::min(share.end * b, rows_)}, b, norm,
                     [&](int64_t first, int64_t, ConstMatrixMap<double>, ConstMatrixMap<float> x) {
                       losses[size_t(first / b)] = worker_->forward(x);
                     });
    });
    comm_.allreduce_sum(std::span<double>(losses));
    double sum = 0.0;
    for (double l : losses) sum += l;
    return sum / double(rows_);
  }
  const RowRange share = even_split(rows_, comm_.rank(), comm_.size());
  double sums[2] = {0.0, double(share.end - share.begin)};
  comm_.agree([&] {
    for_each_block(sources_, share, model_.max_batch(), norm,
                   [&](int64_t, int64_t, ConstMatrixMap<double>, ConstMatrixMap<float> x) {
                     sums[0] += model_.forward(x);
                   });
  });
  comm_.allreduce_sum(std::span<double>(sums));
  return sums[0] / sums[1];
}

}  // namespace aetrain
