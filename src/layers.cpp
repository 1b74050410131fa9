#include "aetrain/layers.hpp"

#include <stdexcept>

#include "aetrain/parallel.hpp"

namespace aetrain {
namespace {

// f(first column, columns) over one slice of the columns of a (rows, cols) matrix per thread.
template <class F>
void for_column_slices(Index rows, Index cols, F&& f) {
  for_slices(cols, rows, [&](int64_t begin, int64_t end) { f(Index(begin), Index(end - begin)); });
}

}  // namespace

template <class S>
void dense_forward(MatrixMap<S> y, ConstMatrixMap<S> w, ConstVectorMap<S> b, ConstMatrixMap<S> x,
                   Gemm<S>& gemm) {
  y.colwise() = b;
  gemm(y, w, Op::none, x, Op::none, /*accumulate=*/true);
}

template <class S>
void dense_backward_params(MatrixMap<S> dw, VectorMap<S> db, ConstMatrixMap<S> dy,
                           ConstMatrixMap<S> x, Gemm<S>& gemm) {
  gemm(dw, dy, Op::none, x, Op::transpose, /*accumulate=*/false);
  // Column by column, so the order of the sum never depends on where db sits in memory.
  db.setZero();
  for (Index c = 0; c < dy.cols(); ++c) db += dy.col(c);
}

template <class S>
void dense_backward_input(MatrixMap<S> dx, ConstMatrixMap<S> w, ConstMatrixMap<S> dy,
                          Gemm<S>& gemm) {
  gemm(dx, w, Op::transpose, dy, Op::none, /*accumulate=*/false);
}

template <class S>
void activation_forward(Activation f, MatrixMap<S> a) {
  if (f == Activation::linear) return;
  for_column_slices(a.rows(), a.cols(), [&](Index c0, Index nc) {
    auto s = a.middleCols(c0, nc).array();
    switch (f) {
      case Activation::relu: s = s.max(S(0)); break;
      case Activation::sigmoid: s = s.logistic(); break;
      case Activation::tanh: s = s.tanh(); break;
      case Activation::linear: break;
    }
  });
}

template <class S>
void activation_backward(Activation f, ConstMatrixMap<S> a, MatrixMap<S> d) {
  if (f == Activation::linear) return;
  for_column_slices(a.rows(), a.cols(), [&](Index c0, Index nc) {
    auto av = a.middleCols(c0, nc).array();
    auto dv = d.middleCols(c0, nc).array();
    switch (f) {
      case Activation::relu: dv = (av > S(0)).select(dv, S(0)); break;
      case Activation::sigmoid: dv *= av * (S(1) - av); break;
      case Activation::tanh: dv *= S(1) - av.square(); break;
      case Activation::linear: break;
    }
  });
}

template <class S>
double squared_error_sum(ConstMatrixMap<S> y, ConstMatrixMap<S> x) {
  double sum = 0;
  for (Index c = 0; c < y.cols(); ++c) sum += double((y.col(c) - x.col(c)).squaredNorm());
  return y.rows() == 0 ? 0.0 : sum / double(y.rows());
}

template <class S>
void squared_error_backward(MatrixMap<S> d, ConstMatrixMap<S> y, ConstMatrixMap<S> x, S scale,
                            bool accumulate) {
  const S k = scale * S(2) / S(y.rows());
  for_column_slices(y.rows(), y.cols(), [&](Index c0, Index nc) {
    auto diff = k * (y.middleCols(c0, nc) - x.middleCols(c0, nc));
    if (accumulate)
      d.middleCols(c0, nc) += diff;
    else
      d.middleCols(c0, nc) = diff;
  });
}

template <class S>
void dense_forward_ref(MatrixMap<S> y, ConstMatrixMap<S> w, ConstVectorMap<S> b,
                       ConstMatrixMap<S> x) {
  for (Index s = 0; s < x.cols(); ++s)
    for (Index o = 0; o < w.rows(); ++o) {
      S acc = b(o);
      for (Index i = 0; i < w.cols(); ++i) acc += w(o, i) * x(i, s);
      y(o, s) = acc;
    }
}

template <class S>
void dense_backward_ref(MatrixMap<S> dw, VectorMap<S> db, MatrixMap<S> dx, ConstMatrixMap<S> dy,
                        ConstMatrixMap<S> w, ConstMatrixMap<S> x) {
  dw.setZero();
  db.setZero();
  dx.setZero();
  for (Index s = 0; s < x.cols(); ++s)
    for (Index o = 0; o < w.rows(); ++o) {
      db(o) += dy(o, s);
      for (Index i = 0; i < w.cols(); ++i) {
        dw(o, i) += dy(o, s) * x(i, s);
        dx(i, s) += w(o, i) * dy(o, s);
      }
    }
}

#define AETRAIN_INSTANTIATE(S)                                                                     \
  template void dense_forward<S>(MatrixMap<S>, ConstMatrixMap<S>, ConstVectorMap<S>,               \
                                 ConstMatrixMap<S>, Gemm<S>&);                                     \
  template void dense_backward_params<S>(MatrixMap<S>, VectorMap<S>, ConstMatrixMap<S>,            \
                                         ConstMatrixMap<S>, Gemm<S>&);                             \
  template void dense_backward_input<S>(MatrixMap<S>, ConstMatrixMap<S>, ConstMatrixMap<S>,        \
                                        Gemm<S>&);                                                 \
  template void activation_forward<S>(Activation, MatrixMap<S>);                                   \
  template void activation_backward<S>(Activation, ConstMatrixMap<S>, MatrixMap<S>);               \
  template double squared_error_sum<S>(ConstMatrixMap<S>, ConstMatrixMap<S>);                      \
  template void squared_error_backward<S>(MatrixMap<S>, ConstMatrixMap<S>, ConstMatrixMap<S>, S,   \
                                          bool);                                                   \
  template void dense_forward_ref<S>(MatrixMap<S>, ConstMatrixMap<S>, ConstVectorMap<S>,           \
                                     ConstMatrixMap<S>);                                           \
  template void dense_backward_ref<S>(MatrixMap<S>, VectorMap<S>, MatrixMap<S>, ConstMatrixMap<S>, \
                                      ConstMatrixMap<S>, ConstMatrixMap<S>);
AETRAIN_INSTANTIATE(float)
AETRAIN_INSTANTIATE(double)
#undef AETRAIN_INSTANTIATE

}  // namespace aetrain
