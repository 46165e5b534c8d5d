// Streaming X^T X: float32 GEMMs over row chunks, float64 accumulators.
#include "lpcv/linalg/hessian.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "lpcv/common/errors.hpp"
#include "lpcv/common/parallel.hpp"
#include "lpcv/linalg/dense.hpp"

namespace lpcv::linalg {

namespace {

bool all_finite(const float* x, std::int64_t n) {
  constexpr std::int64_t kChunk = 1 << 16;
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<int> bad(static_cast<std::size_t>(chunks), 0);
  parallel_for(chunks, [&](std::int64_t c) {
    const std::int64_t i0 = c * kChunk, i1 = std::min(n, i0 + kChunk);
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (std::int64_t i = i0; i < i1; ++i) acc += x[i] * 0.0f;  // NaN iff NaN/Inf
    bad[c] = acc != 0.0f || std::isnan(acc);
  }, 2);
  return std::none_of(bad.begin(), bad.end(), [](int b) { return b != 0; });
}

// Rows of at least this many columns get a triangular product (half the
// flops, in column blocks of kTriBlock); narrower ones one full GEMM.
constexpr std::int64_t kTriMin = 1024, kTriBlock = 512;

// S (upper triangle incl. diagonal, or all of it when !tri) += buf.
void add_into(double* S, const float* buf, std::int64_t k, bool tri, bool parallel) {
  auto row = [&](std::int64_t i) {
    const std::int64_t j0 = tri ? i : 0;
    double* s = S + i * k;
    const float* b = buf + i * k;
#pragma omp simd
    for (std::int64_t j = j0; j < k; ++j) s[j] += static_cast<double>(b[j]);
  };
  if (parallel) parallel_for_dynamic((k + 63) / 64, [&](std::int64_t c) {
    for (std::int64_t i = c * 64; i < std::min(k, (c + 1) * 64); ++i) row(i);
  }, 2);
  else for (std::int64_t i = 0; i < k; ++i) row(i);
}

// Copies the upper triangle of S into the lower one (64 x 64 tiles).
void mirror_upper(double* S, std::int64_t k, bool parallel) {
  constexpr std::int64_t T = 64;
  const std::int64_t nt = (k + T - 1) / T;
  auto tile_row = [&](std::int64_t bi) {
    for (std::int64_t bj = 0; bj <= bi; ++bj)
      for (std::int64_t i = bi * T; i < std::min(k, (bi + 1) * T); ++i)
        for (std::int64_t j = bj * T; j < std::min(i, (bj + 1) * T); ++j) S[i * k + j] = S[j * k + i];
  };
  if (parallel) parallel_for_dynamic(nt, tile_row, 2);
  else for (std::int64_t b = 0; b < nt; ++b) tile_row(b);
}

// One group's chunked X^T X; `rows_of(r0, nr, dst)` fills nr rows.
template <typename Fill>
void gram_group(std::int64_t n, std::int64_t k, double* S, bool parallel, Fill&& rows_of,
                std::vector<float>& chunk, std::vector<float>& buf) {
  buf.resize(static_cast<std::size_t>(k * k));
  const bool tri = k >= kTriMin;
  for (std::int64_t r0 = 0; r0 < n; r0 += kGramChunkRows) {
    const std::int64_t nr = std::min(kGramChunkRows, n - r0);
    const float* Xc = rows_of(r0, nr, chunk);
    if (tri) {
      // block row [j0, j1) of the upper triangle: X[:, j0:j1]^T X[:, j0:]
      for (std::int64_t j0 = 0; j0 < k; j0 += kTriBlock) {
        const std::int64_t jb = std::min(kTriBlock, k - j0);
        sgemm(true, false, jb, k - j0, nr, 1.0f, Xc + j0, k, Xc + j0, k, 0.0f,
              buf.data() + j0 * k + j0, k);
      }
    } else {
      sgemm(true, false, k, k, nr, 1.0f, Xc, k, Xc, k, 0.0f, buf.data(), k);
    }
    add_into(S, buf.data(), k, tri, parallel);
  }
  if (tri) mirror_upper(S, k, parallel);
}

}  // namespace

void accumulate_gram(const float* X, std::int64_t groups, std::int64_t n, std::int64_t k,
                     double* S) {
  if (groups < 1 || n < 0 || k < 1)
    throw ShapeError(cat("accumulate_gram: bad shape (", groups, ", ", n, ", ", k, ")"));
  if (n == 0) return;
  if (!all_finite(X, groups * n * k)) throw InvalidArgument("x contains NaN or Inf values");
  const bool over_groups = groups >= omp_get_max_threads() && groups > 1;
  auto one = [&](std::int64_t g, bool parallel) {
    std::vector<float> chunk, buf;
    const float* Xg = X + g * n * k;
    gram_group(n, k, S + g * k * k, parallel,
               [&](std::int64_t r0, std::int64_t, std::vector<float>&) { return Xg + r0 * k; },
               chunk, buf);
  };
  if (over_groups) parallel_for_dynamic(groups, [&](std::int64_t g) { one(g, false); });
  else for (std::int64_t g = 0; g < groups; ++g) one(g, true);
}

void accumulate_conv_gram(const float* x, const ConvGeometry& geo, double* S) {
  geo.validate();
  const std::int64_t R = geo.rows(), K = geo.cols(), G = geo.group;
  if (R == 0) return;
  if (!all_finite(x, geo.batch * geo.channels * geo.height * geo.width))
    throw InvalidArgument("x contains NaN or Inf values");
  const bool over_groups = G >= omp_get_max_threads() && G > 1;
  auto one = [&](std::int64_t g, bool parallel) {
    std::vector<float> chunk, buf;
    gram_group(R, K, S + g * K * K, parallel,
               [&](std::int64_t r0, std::int64_t nr, std::vector<float>& dst) {
                 dst.resize(static_cast<std::size_t>(nr * K));
                 if (parallel) {
                   constexpr std::int64_t kPiece = 128;
                   parallel_for((nr + kPiece - 1) / kPiece, [&](std::int64_t p) {
                     const std::int64_t a = p * kPiece, len = std::min(kPiece, nr - a);
                     im2col_range(x, geo, g, r0 + a, len, dst.data() + a * K);
                   }, 2);
                 } else {
                   im2col_range(x, geo, g, r0, nr, dst.data());
                 }
                 return static_cast<const float*>(dst.data());
               },
               chunk, buf);
  };
  if (over_groups) parallel_for_dynamic(G, [&](std::int64_t g) { one(g, false); });
  else for (std::int64_t g = 0; g < G; ++g) one(g, true);
}

}  // namespace lpcv::linalg
