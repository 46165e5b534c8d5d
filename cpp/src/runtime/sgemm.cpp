// oneDNN's sgemm behind a header without oneDNN types (DESIGN.md §1: the
// runtime is the only place that includes oneDNN).
#include "lpcv/runtime/sgemm.hpp"

#include <oneapi/dnnl/dnnl.h>

#include "lpcv/common/errors.hpp"

namespace lpcv::runtime {

void sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta,
           float* C, std::int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  const dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, A, lda,
                                      B, ldb, beta, C, ldc);
  if (st != dnnl_success)
    throw BackendError(cat("oneDNN sgemm failed (status ", static_cast<int>(st), ") for m=", m,
                           " n=", n, " k=", k));
}

}  // namespace lpcv::runtime
