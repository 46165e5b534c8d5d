// Dense float32 linear algebra on top of the runtime's GEMM (oneDNN sgemm,
// run-time ISA dispatch: the distributed build has no -march flags, so
// Eigen's own GEMM would be SSE2-only). The Cholesky and triangular inverse
// are blocked so that their bulk is GEMM.
#include "lpcv/linalg/dense.hpp"

#include "lpcv/runtime/sgemm.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "lpcv/common/errors.hpp"
#include "lpcv/common/parallel.hpp"

namespace lpcv::linalg {

namespace {
using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr std::int64_t kBlock = 128;  // Cholesky panel width and inverse leaf size
}  // namespace

void sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k,
           float alpha, const float* A, std::int64_t lda, const float* B,
           std::int64_t ldb, float beta, float* C, std::int64_t ldc) {
  runtime::sgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

bool cholesky_lower(float* A, std::int64_t n, std::int64_t lda) {
  std::vector<float> tmp, linv;
  for (std::int64_t j = 0; j < n; j += kBlock) {
    const std::int64_t jb = std::min(kBlock, n - j);
    // Left-looking update of block column j with the finished columns 0..j.
    if (j > 0)
      sgemm(false, true, n - j, jb, j, -1.0f, A + j * lda, lda, A + j * lda, lda, 1.0f,
            A + j * lda + j, lda);
    // Diagonal block in float64.
    MatD D(jb, jb);
    for (std::int64_t r = 0; r < jb; ++r)
      for (std::int64_t c = 0; c <= r; ++c) D(r, c) = A[(j + r) * lda + j + c];
    Eigen::LLT<MatD, Eigen::Lower> llt(D);
    if (llt.info() != Eigen::Success) return false;
    MatD L = llt.matrixL();
    for (std::int64_t r = 0; r < jb; ++r) {
      if (!(L(r, r) > 0.0)) return false;
      for (std::int64_t c = 0; c < jb; ++c)
        A[(j + r) * lda + j + c] = c <= r ? static_cast<float>(L(r, c)) : 0.0f;
    }
    const std::int64_t rest = n - j - jb;
    if (rest == 0) continue;
    // Panel solve P <- P L_jj^{-T} as a GEMM with the explicit inverse.
    MatD Li = L.triangularView<Eigen::Lower>().solve(MatD::Identity(jb, jb));
    linv.assign(static_cast<std::size_t>(jb * jb), 0.0f);
    for (std::int64_t r = 0; r < jb; ++r)
      for (std::int64_t c = 0; c <= r; ++c) linv[r * jb + c] = static_cast<float>(Li(r, c));
    tmp.resize(static_cast<std::size_t>(rest * jb));
    float* P = A + (j + jb) * lda + j;
    sgemm(false, true, rest, jb, jb, 1.0f, P, lda, linv.data(), jb, 0.0f, tmp.data(), jb);
    for (std::int64_t r = 0; r < rest; ++r)
      std::copy(tmp.data() + r * jb, tmp.data() + (r + 1) * jb, P + r * lda);
  }
  for (std::int64_t r = 0; r < n; ++r)
    std::fill(A + r * lda + r + 1, A + r * lda + n, 0.0f);
  return true;
}

void invert_lower(float* L, std::int64_t n, std::int64_t lda) {
  if (n <= 0) return;
  if (n <= kBlock) {
    MatD D = MatD::Zero(n, n);
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t c = 0; c <= r; ++c) D(r, c) = L[r * lda + c];
    for (std::int64_t r = 0; r < n; ++r)
      if (D(r, r) == 0.0)
        throw InvalidArgument(cat("invert_lower: zero on the diagonal at ", r));
    MatD Di = D.triangularView<Eigen::Lower>().solve(MatD::Identity(n, n));
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t c = 0; c <= r; ++c) L[r * lda + c] = static_cast<float>(Di(r, c));
    return;
  }
  // [[A, 0], [B, C]]^{-1} = [[A^{-1}, 0], [-C^{-1} B A^{-1}, C^{-1}]]
  const std::int64_t n1 = ((n / 2 + kBlock - 1) / kBlock) * kBlock;
  const std::int64_t n2 = n - n1;
  float* A = L;
  float* B = L + n1 * lda;
  float* C = L + n1 * lda + n1;
  invert_lower(A, n1, lda);
  invert_lower(C, n2, lda);
  std::vector<float> tmp(static_cast<std::size_t>(n2 * n1));
  sgemm(false, false, n2, n1, n1, 1.0f, B, lda, A, lda, 0.0f, tmp.data(), n1);
  sgemm(false, false, n2, n1, n2, -1.0f, C, lda, tmp.data(), n1, 0.0f, B, lda);
}

bool inverse_cholesky_upper(const float* A, std::int64_t n, float* U) {
  // R = J A J (reversed rows and columns), lower triangle filled.
  // (J A J)_ij = A_{n-1-i, n-1-j}: rows read backwards (contiguous).
  std::vector<float> R(static_cast<std::size_t>(n * n));
  parallel_for(n, [&](std::int64_t i) {
    const float* src = A + (n - 1 - i) * n + (n - 1);
    for (std::int64_t j = 0; j <= i; ++j) R[i * n + j] = src[-j];
  }, 256);
  if (!cholesky_lower(R.data(), n, n)) return false;
  invert_lower(R.data(), n, n);
  parallel_for(n, [&](std::int64_t i) {
    const float* src = R.data() + (n - 1 - i) * n + (n - 1);
    for (std::int64_t j = 0; j < n; ++j) U[i * n + j] = src[-j];
  }, 256);
  return true;
}

}  // namespace lpcv::linalg
