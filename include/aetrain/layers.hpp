// Stateless forward/backward kernels: dense layers, activations, the squared-error loss.
// Matrices hold one sample per column; n is the number of samples.
#pragma once

#include <string>

#include "aetrain/config.hpp"
#include "aetrain/gemm.hpp"

namespace aetrain {

/// y (out,n) = w (out,in) x (in,n) + b (out): a dense layer before its activation.
template <class S>
void dense_forward(MatrixMap<S> y, ConstMatrixMap<S> w, ConstVectorMap<S> b, ConstMatrixMap<S> x,
                   Gemm<S>& gemm);

/// dw (out,in) = dy (out,n) x^T (n,in), db (out) = dy summed over samples: the parameter gradients.
template <class S>
void dense_backward_params(MatrixMap<S> dw, VectorMap<S> db, ConstMatrixMap<S> dy,
                           ConstMatrixMap<S> x, Gemm<S>& gemm);

/// dx (in,n) = w^T (in,out) dy (out,n): the gradient passed to the layer below.
template <class S>
void dense_backward_input(MatrixMap<S> dx, ConstMatrixMap<S> w, ConstMatrixMap<S> dy,
                          Gemm<S>& gemm);

/// a (width,n) = f(a), in place.
template <class S>
void activation_forward(Activation f, MatrixMap<S> a);

/// d (width,n) *= f'(z), with f'(z) written through the activation's output a = f(z) (width,n).
template <class S>
void activation_backward(Activation f, ConstMatrixMap<S> a, MatrixMap<S> d);

/// Sum over the n samples of mean((y - x)^2) over the d features: y, x (d,n).
template <class S>
double squared_error_sum(ConstMatrixMap<S> y, ConstMatrixMap<S> x);

/// d (d,n) = scale * 2/d * (y - x), the gradient of scale * squared_error_sum; added when
/// `accumulate`.
template <class S>
void squared_error_backward(MatrixMap<S> d, ConstMatrixMap<S> y, ConstMatrixMap<S> x, S scale,
                            bool accumulate);

/// Reference twins of the dense kernels: plain loops, for tests.
template <class S>
void dense_forward_ref(MatrixMap<S> y, ConstMatrixMap<S> w, ConstVectorMap<S> b,
                       ConstMatrixMap<S> x);
template <class S>
void dense_backward_ref(MatrixMap<S> dw, VectorMap<S> db, MatrixMap<S> dx, ConstMatrixMap<S> dy,
                        ConstMatrixMap<S> w, ConstMatrixMap<S> x);

}  // namespace aetrain
