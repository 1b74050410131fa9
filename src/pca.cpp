#include "aetrain/pca.hpp"

#include <Eigen/Eigenvalues>
#include <stdexcept>
#include <string>

#include "aetrain/model.hpp"

namespace aetrain {

PcaModel fit_pca(const Moments& m, Index k) {
  const Index d = m.mean.size();
  if (k < 1 || k > d)
    throw std::invalid_argument("--components must be between 1 and the " + std::to_string(d) +
                                " columns, got " + std::to_string(k));
  if (m.rows < 2) throw std::invalid_argument("a PCA needs at least 2 rows");
  if (!m.full()) throw std::logic_error("fit_pca needs the full scatter matrix");
  const Eigen::MatrixXd covariance =
      m.scatter.selfadjointView<Eigen::Lower>().toDenseMatrix() / double(m.rows - 1);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(covariance);
  if (solver.info() != Eigen::Success) throw std::runtime_error("PCA: eigensolver failed");
  PcaModel pca;
  pca.rows = m.rows;
  pca.mean = m.mean;
  pca.components.resize(d, k);
  pca.explained_variance.resize(k);
  for (Index c = 0; c < k; ++c) {  // eigenvalues come ascending
    Eigen::VectorXd axis = solver.eigenvectors().col(d - 1 - c);
    Index largest = 0;
    axis.cwiseAbs().maxCoeff(&largest);
    if (axis(largest) < 0) axis = -axis;
    pca.components.col(c) = axis;
    pca.explained_variance(c) = std::max(0.0, solver.eigenvalues()(d - 1 - c));
  }
  pca.total_variance = covariance.trace();
  return pca;
}

ModelConfig pca_model_config(const PcaModel& pca) {
  ModelConfig c;
  c.input_dim = pca.mean.size();
  c.encoder_widths = {pca.components.cols()};
  c.activation = c.code_activation = c.output_activation = Activation::linear;
  return c;
}

std::vector<float> pca_model_params(const PcaModel& pca) {
  const ModelConfig config = pca_model_config(pca);
  const std::vector<LayerShape> layers = layer_shapes(config);
  std::vector<float> params(size_t(parameter_count(config)));
  const Eigen::MatrixXd& w = pca.components;  // (d, k)
  // Encoder kernel (k, d) = W^T, bias -W^T mean; decoder kernel (d, k) = W, bias mean.
  MatrixMap<float>(params.data() + layers[0].kernel_offset, w.cols(), w.rows()) =
      w.transpose().cast<float>();
  VectorMap<float>(params.data() + layers[0].bias_offset, w.cols()) =
      (-(w.transpose() * pca.mean)).cast<float>();
  MatrixMap<float>(params.data() + layers[1].kernel_offset, w.rows(), w.cols()) = w.cast<float>();
  VectorMap<float>(params.data() + layers[1].bias_offset, w.rows()) = pca.mean.cast<float>();
  return params;
}

}  // namespace aetrain
