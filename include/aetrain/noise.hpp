// Denoising: the corruption of training rows (--noise). A row's noise depends only on the
// seed, the epoch and the row's index in the data (its place in the concatenated files), drawn
// from a generator started at those three: every number of ranks, every window layout and a
// resumed run draw the same noise for the same row.
#pragma once

#include <cstdint>
#include <string>

#include "aetrain/config.hpp"
#include "aetrain/matrix.hpp"

namespace aetrain {

/// "none", "gaussian:SIGMA" (SIGMA > 0) or "mask:P" (0 < P < 1); throws std::invalid_argument
/// saying what is wrong.
Noise parse_noise(const std::string& spec);
/// The text parse_noise reads back as `noise` (the number in its shortest exact form).
std::string noise_text(const Noise& noise);

/// `noisy` = `clean` corrupted (both (cols, n), column i the data row `rows[i]`), the values as
/// the model sees them (after normalization): gaussian adds sigma * z to each value, z standard
/// normal (Box-Muller, in double, rounded to float once); mask sets each value to 0 with
/// probability P. `noise.kind` must not be none.
void corrupt(const Noise& noise, uint64_t seed, int64_t epoch, const int64_t* rows,
             ConstMatrixMap<float> clean, MatrixMap<float> noisy);

}  // namespace aetrain
