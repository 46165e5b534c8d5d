#pragma once
/// @file sgemm.hpp
/// oneDNN's float32 GEMM, for the dense linear algebra of the compression
/// algorithms (lpcv::linalg). oneDNN picks the instruction set at run time;
/// Eigen's GEMM would be compiled for the build's baseline ISA (SSE2 in the
/// distributed wheel). No oneDNN type appears here (DESIGN.md §1).
#include <cstdint>

namespace lpcv::runtime {

/// C = alpha * op(A) * op(B) + beta * C, row-major float32 with leading
/// dimensions; op(A) is m x k, op(B) k x n. m, n or k == 0 only applies
/// beta. Runs on the OpenMP pool. Throws BackendError on failure.
void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
           float alpha, const float* A, std::int64_t lda, const float* B, std::int64_t ldb,
           float beta, float* C, std::int64_t ldc);

}  // namespace lpcv::runtime
