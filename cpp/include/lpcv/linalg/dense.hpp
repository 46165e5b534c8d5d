#pragma once
/// @file dense.hpp
/// Dense float32 linear algebra shared by the layer-wise compression
/// algorithms (GPTQ, AdaRound, Hessian accumulation): a row-major GEMM whose
/// instruction set is chosen at run time, and a blocked Cholesky / triangular
/// inverse built on it. No backend type appears here (DESIGN.md §1).
///
/// All matrices are row-major with a leading dimension (elements between
/// the starts of two consecutive rows).
#include <cstdint>

namespace lpcv::linalg {

/// C = alpha * op(A) * op(B) + beta * C, row-major float32.
/// op(A) is m x k, op(B) is k x n, C is m x n. Runs on the OpenMP pool
/// (serially when called inside a parallel region). m, n or k == 0 is a
/// no-op apart from the beta scaling. Throws BackendError on failure.
void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
           std::int64_t k, float alpha, const float* A, std::int64_t lda,
           const float* B, std::int64_t ldb, float beta, float* C,
           std::int64_t ldc);

/// In-place lower Cholesky factor A = L L^T of a symmetric positive definite
/// n x n matrix (only the lower triangle is read). On success the lower
/// triangle holds L and the strict upper triangle is zeroed. Blocked,
/// left-looking; diagonal blocks are factored in float64.
/// @return false when A is not (numerically) positive definite; A is then
///         partially overwritten.
bool cholesky_lower(float* A, std::int64_t n, std::int64_t lda);

/// In-place inverse of a lower-triangular n x n matrix with a non-zero
/// diagonal (strict upper triangle must be zero; stays zero). Recursive
/// 2 x 2 blocking with GEMMs; leaf blocks inverted in float64.
void invert_lower(float* L, std::int64_t n, std::int64_t lda);

/// Upper-triangular U with U^T U = A^{-1} (the upper Cholesky factor of the
/// inverse of the SPD n x n matrix A, stored in full and symmetric), written to U
/// (n x n, contiguous). One Cholesky and one triangular inverse: with J the
/// reversal permutation, chol(J A J) = L' gives U = J L'^{-1} J.
/// @return false when A is not positive definite.
bool inverse_cholesky_upper(const float* A, std::int64_t n, float* U);

}  // namespace lpcv::linalg
