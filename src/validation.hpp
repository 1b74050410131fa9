// The validation loss: the model's mean loss over rows it does not train on, each rank
// reading an even share of them a batch at a time through the one block reader (bounded
// memory for any validation set).
#pragma once

#include <optional>

#include "aetrain/comm.hpp"
#include "aetrain/model.hpp"
#include "aetrain/normalization.hpp"
#include "aetrain/sources.hpp"

namespace aetrain {

class Validation {
 public:
  /// Rows of `val` for `model` (trained on rows `train_cols` wide). With
  /// `block_rows` > 0 (--deterministic) the rows go in blocks of that many, each through a
  /// one-thread worker reading the model's weights, and their losses are summed in block order:
  /// the same loss on any number of ranks.
  Validation(const Sources& val, Autoencoder<float>& model, int64_t train_cols, int64_t block_rows,
             const Comm& comm);

  int64_t rows() const { return rows_; }
  /// The mean loss over every row, normalized by `norm`. Collective.
  double loss(const Normalization& norm);

 private:
  Autoencoder<float>& model_;
  const Comm& comm_;
  Sources sources_;  // read through for_each_block, a block (a batch) at a time
  int64_t rows_, block_rows_;
  std::optional<Autoencoder<float>> worker_;  // block_rows_ > 0
};

}  // namespace aetrain
