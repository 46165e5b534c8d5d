#pragma once
/// @file adaround.hpp
/// AdaRound (Nagel et al., 2020): learn, per weight, whether to round down
/// or up by minimising the layer's output reconstruction error.
///
/// Per group g (grouped convolutions are G independent problems), with
/// per-row scale s, zero point z and grid [qmin, qmax]:
///   h(V)  = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1), zeta = 1.1,
///           gamma = -0.1
///   W~    = s (clamp(floor(W / s) + h(V) + z, qmin, qmax) - z)
///   loss  = (1/B) sum_rows ||f(x W^T + b) - f(x^ W~^T + b)||^2
///           + reg_weight * sum (1 - |2 h(V) - 1|^beta)
/// over minibatches of B rows, f = identity / relu / relu6, x the float
/// layer input, x^ the input seen by the quantized model. The regulariser is
/// off for the first warm_start * iters iterations; beta then decays
/// linearly from beta_start to beta_end. V starts where h(V) equals the
/// fractional part of W / s, and is optimised with Adam. The result is
/// clamp(floor(W / s) + [h(V) >= 0.5] + z, qmin, qmax).
///
/// Arithmetic is float32 (oneDNN GEMMs), loss sums in float64.
#include <array>
#include <cstdint>
#include <vector>

#include "lpcv/quantize/uniform.hpp"

namespace lpcv::quantize {

enum class Activation { none, relu, relu6 };

struct AdaRoundParams {
  Scheme scheme{4, true, false, false, false};
  std::int64_t iters = 10000;       ///< total iterations, >= 0
  std::int64_t batch_size = 1024;   ///< rows per step (all rows when N is smaller)
  double lr = 1e-3;                 ///< Adam step size
  double reg_weight = 0.01;         ///< lambda
  double beta_start = 20.0, beta_end = 2.0;
  double warm_start = 0.2;          ///< fraction of iters without regulariser
  Activation activation = Activation::none;
  std::uint64_t seed = 0;           ///< minibatch sampling
};

/// Views of the problem; they must outlive the solver.
struct AdaRoundData {
  const float* W = nullptr;      ///< [G, M, K]
  const float* X = nullptr;      ///< [G, N, K] float inputs (target)
  const float* Xq = nullptr;     ///< [G, N, K] quantized-model inputs (may be X)
  const float* scale = nullptr;  ///< [G * M]
  const std::int32_t* zero_point = nullptr;  ///< [G * M]
  const float* bias = nullptr;   ///< [G * M] or nullptr
  std::int64_t G = 0, M = 0, K = 0, N = 0;
};

/// Stateful optimiser so that long runs can be done in chunks (progress
/// bars): run(a) then run(b) equals run(a + b). Deterministic for a given
/// seed, whatever the number of threads or chunking (each group has its own
/// random stream).
/// xoshiro256** (Blackman & Vigna): a small fast generator for minibatch
/// rows, seeded through splitmix64.
class RowRng {
 public:
  explicit RowRng(std::uint64_t seed);
  std::uint64_t operator()();

 private:
  std::array<std::uint64_t, 4> s_{};
};

class AdaRound {
 public:
  /// Validates (shapes, NaN/Inf, grid, settings) and initialises V.
  AdaRound(const AdaRoundData& data, const AdaRoundParams& params);

  /// Runs up to n more iterations (never past params.iters).
  void run(std::int64_t n);
  std::int64_t iteration() const { return t_; }

  /// Loss of group g at V_g (float32 [M, K]) on the given rows (indices in
  /// [0, N)) and its gradient w.r.t. V_g (float32 [M, K]); the code path of
  /// the optimisation step (test hook for finite differences).
  double loss_and_grad(std::int64_t g, const float* V, const std::int64_t* rows,
                       std::int64_t n_rows, double beta, bool use_reg, float* grad) const;

  /// Current V, float32 [G, M, K].
  const std::vector<float>& V() const { return V_; }
  /// Loss of the last iteration per group (NaN before the first).
  const std::vector<double>& last_loss() const { return last_loss_; }

  /// Final integers clamp(floor(W/s) + [h(V) >= 0.5] + z) as int32 [G, M, K].
  void rounded(std::int32_t* q) const;
  /// Integers of round-to-nearest, clamp(round(W/s) + z) (half to even).
  void nearest(std::int32_t* q) const;
  /// Output reconstruction error per group of integer weights q (int32
  /// [G, M, K]): (1/N) sum over all rows of ||f(x W^T + b) - f(x^ Wq^T + b)||^2.
  std::vector<double> output_error(const std::int32_t* q) const;

 private:
  struct Work;
  void step(std::int64_t g, Work& w, RowRng& rng, std::int64_t t);
  double evaluate(std::int64_t g, const float* V, const std::int64_t* rows, std::int64_t nb,
                  double beta, bool use_reg, float* grad, Work& w, bool inner_parallel) const;

  AdaRoundData d_;
  AdaRoundParams p_;
  IntRange range_{};
  std::vector<float> floor_;   // floor(W / s), [G, M, K]
  std::vector<float> V_, m_, v_;
  std::vector<float> target_;  // f(X W^T + b) [G, N, M] when cached, else empty
  std::vector<RowRng> rng_;
  std::vector<double> last_loss_;
  std::int64_t t_ = 0;
  bool over_groups_ = false;
};

}  // namespace lpcv::quantize
