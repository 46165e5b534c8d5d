#pragma once
/// @file hessian.hpp
/// Streaming layer Hessians S += X^T X for the layer-wise reconstruction
/// problems (GPTQ, OBS-style pruning, AdaRound row statistics).
///
/// Accuracy: each product is formed by a float32 GEMM over chunks of at most
/// kGramChunkRows rows and added to float64 accumulators, so the rounding
/// error of an entry is that of a float32 sum of <= kGramChunkRows products
/// (relative ~1e-6 for typical data) and does not grow with the number of
/// updates.
#include <cstdint>

#include "lpcv/linalg/im2col.hpp"

namespace lpcv::linalg {

/// Rows per float32 GEMM before the product is added to the float64 sums.
constexpr std::int64_t kGramChunkRows = 4096;

/// S_g += X_g^T X_g for every group.
/// @param X float32 [groups, n, k] (C order)
/// @param S float64 [groups, k, k], accumulated in place (full symmetric)
/// Throws InvalidArgument if X contains NaN or Inf (S then unchanged).
void accumulate_gram(const float* X, std::int64_t groups, std::int64_t n, std::int64_t k,
                     double* S);

/// S_g += C_g^T C_g with C = im2col(x) (see im2col.hpp), without forming
/// the whole im2col matrix (row chunks).
/// @param x float32 [batch, channels, height, width]
/// @param S float64 [group, cols(), cols()], accumulated in place
/// Throws InvalidArgument if x contains NaN or Inf (S then unchanged).
void accumulate_conv_gram(const float* x, const ConvGeometry& g, double* S);

}  // namespace lpcv::linalg
