#include "aetrain/normalization.hpp"

#include <cmath>
#include <stdexcept>

namespace aetrain {

Normalization fit_normalization(NormalizeKind kind, const Moments& m, int64_t* constant) {
  Normalization n;
  n.kind = kind;
  n.rows = m.rows;
  if (constant) *constant = 0;
  if (kind == NormalizeKind::none) return n;
  if (m.rows < 1) throw std::invalid_argument("normalization statistics need at least one row");
  if (kind == NormalizeKind::standard) {
    n.offset = m.mean;
    n.scale = (m.m2 / double(m.rows)).cwiseSqrt();
  } else {
    n.offset = m.min;
    n.scale = m.max - m.min;
  }
  // Constant by min == max, which is exact: the rounding in the mean can leave a tiny spread.
  for (Index c = 0; c < n.scale.size(); ++c)
    if (m.min(c) == m.max(c)) {
      n.offset(c) = m.min(c);  // so the column becomes exactly 0
      n.scale(c) = 1.0;
      if (constant) ++*constant;
    }
  return n;
}

std::string constant_columns_warning(int64_t constant, int64_t cols, NormalizeKind kind) {
  const bool one = constant == 1;
  return std::to_string(constant) + " of " + std::to_string(cols) + " columns " +
         (one ? "is" : "are") + " constant: --normalize " + name_of(kind) + " shifts " +
         (one ? "it" : "them") + " to 0 and leaves " + (one ? "it" : "them") + " unscaled";
}

void validate(const Normalization& n, Index d) {
  if (n.identity()) return;
  if (n.offset.size() != d || n.scale.size() != d)
    throw std::invalid_argument("the normalization has " + std::to_string(n.offset.size()) +
                                " offsets and " + std::to_string(n.scale.size()) + " scales for " +
                                std::to_string(d) + " columns");
  if (!n.offset.allFinite() || !n.scale.allFinite() || (n.scale.array() <= 0).any())
    throw std::invalid_argument(
        "the normalization has a non-finite offset or scale, or a scale that is not positive");
}

void normalize(const Normalization& n, ConstMatrixMap<double> x, MatrixMap<float> out) {
  if (n.identity()) {
    out = x.cast<float>();
    return;
  }
  out = ((x.colwise() - n.offset).array().colwise() / n.scale.array()).cast<float>();
}

void denormalize(const Normalization& n, ConstMatrixMap<float> y, MatrixMap<double> out) {
  if (n.identity()) {
    out = y.cast<double>();
    return;
  }
  out = (y.cast<double>().array().colwise() * n.scale.array()).matrix().colwise() + n.offset;
}

Moments normalized(const Moments& m, const Normalization& n) {
  if (n.identity()) return m;
  Moments out = m;
  out.mean = (m.mean - n.offset).cwiseQuotient(n.scale);
  out.m2 = m.m2.cwiseQuotient(n.scale.cwiseAbs2());
  out.min = (m.min - n.offset).cwiseQuotient(n.scale);
  out.max = (m.max - n.offset).cwiseQuotient(n.scale);
  if (m.full()) out.scatter = m.scatter.cwiseQuotient(n.scale * n.scale.transpose());
  return out;
}

}  // namespace aetrain
