#include "aetrain/transform.hpp"

#include <cmath>
#include <cstdio>

namespace aetrain {

TransformCheck apply(const RowTransform& t, ConstMatrixMap<double> x, MatrixMap<double> out) {
  TransformCheck check;
  const bool counts = t.asked.size_factor > 0 || t.asked.scale == CountScale::log1p;
  const bool log1p = t.asked.scale == CountScale::log1p;
  for (Index r = 0; r < x.cols(); ++r) {
    const auto row = x.col(r);
    if (counts && row.minCoeff() < 0) {
      Index c = 0;
      while (row(c) >= 0) ++c;
      check.bad_row = r;
      check.bad_col = c;
      return check;
    }
    double factor = 1;
    if (t.asked.size_factor > 0) {
      const double total = row.sum();
      factor = total > 0 ? t.asked.size_factor / total : 0;
      if (total == 0) ++check.zero_total;
    }
    const auto value = [&](Index c) {
      const double v = row(c) * factor;
      return log1p ? std::log1p(v) : v;
    };
    if (t.columns.empty()) {
      for (Index c = 0; c < row.size(); ++c) out(c, r) = value(c);
    } else {
      for (size_t k = 0; k < t.columns.size(); ++k) out(Index(k), r) = value(t.columns[k]);
    }
  }
  return check;
}

std::string describe(const RowTransform& t) {
  std::string out;
  const auto add = [&](const std::string& part) { out += (out.empty() ? "" : ", ") + part; };
  if (t.asked.size_factor > 0) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", t.asked.size_factor);
    add(std::string("size factor ") + text);
  }
  if (t.asked.scale != CountScale::none) add(name_of(t.asked.scale));
  if (!t.columns.empty())
    add(std::to_string(t.columns.size()) + " of " + std::to_string(t.stored_cols) + " columns" +
        (t.asked.features.empty() ? "" : " (" + t.asked.features + ")"));
  return out.empty() ? "none" : out;
}

}  // namespace aetrain
