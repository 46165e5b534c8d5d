#pragma once
/// @file gptq.hpp
/// GPTQ (Frantar et al., 2022): quantize a layer's weight matrix column by
/// column, compensating each column's rounding error on the columns not yet
/// quantized through the inverse Hessian of the layer-wise reconstruction
/// problem min ||W X^T - Q X^T||^2 (H = 2 X^T X / n).
///
/// Per group g (grouped convolutions are G independent problems):
///   1. dead inputs (H_ii == 0): H_ii = 1 and W[:, i] = 0;
///   2. act_order: columns permuted by descending diag(H) (ties keep their
///      order), undone on the output;
///   3. H += damp * mean(diag H) * I;
///   4. U = upper Cholesky factor of H^{-1} (U^T U = H^{-1});
///   5. for each block of block_size columns, for each column i in it:
///        q_i = clamp(round(w_i / s) + z, qmin, qmax),  w~_i = (q_i - z) s
///        e   = (w_i - w~_i) / U_ii,   loss += e^2 / 2
///        w_j -= e U_ij for the later columns j of the block,
///      then the later blocks get W[:, rest] -= E U[block, rest] (one GEMM).
/// round() is round-half-to-even on the float32 quotient, as in
/// lpcv::quantize::quantize. Arithmetic is float32 (GEMMs by oneDNN).
#include <cstdint>
#include <vector>

#include "lpcv/quantize/uniform.hpp"

namespace lpcv::quantize {

/// GPTQ settings. scheme.bits / is_signed / narrow_range define the grid;
/// zero points must lie in it.
struct GptqParams {
  Scheme scheme{4, true, false, false, false};
  std::int64_t block_size = 128;  ///< >= 1
  double damp = 0.01;             ///< >= 0, relative to mean(diag H)
  bool act_order = false;
};

/// Per-group outcome.
struct GptqResult {
  std::vector<double> loss;               ///< [G] sum of e^2 / 2 (GPTQ's proxy loss)
  std::vector<std::int64_t> dead_columns; ///< [G] inputs with H_ii == 0
};

/// Runs GPTQ on G independent (M x K) problems.
/// @param W      float32 [G, M, K] weights (not modified)
/// @param H      float32 [G, K, K] symmetric positive semi-definite Hessians
/// @param scale  float32 [G * M] per-row scales (> 0, finite)
/// @param zero_point int32 [G * M]
/// @param q      output [G, M, K]: T = int8_t/uint8_t (bits <= 8) or
///               int16_t/uint16_t, signedness matching the scheme
/// Throws InvalidArgument for bad settings, NaN/Inf input, or a Hessian that
/// is not positive definite after dampening (the message names the group).
template <typename T>
GptqResult gptq(const float* W, const float* H, std::int64_t G, std::int64_t M,
                std::int64_t K, const float* scale, const std::int32_t* zero_point,
                const GptqParams& params, T* q);

}  // namespace lpcv::quantize
