// GPTQ; see gptq.hpp for the algorithm.
//
// Within a block every weight row is independent (the error of row m only
// moves row m's later weights), so the column loop runs row by row with the
// row's block segment in L1, rows spread over threads. The update of the
// later blocks is one GEMM per block. Groups run in parallel when there are
// at least as many groups as threads (depthwise), otherwise one at a time
// with the parallelism inside.
#include "lpcv/quantize/gptq.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>

#include "lpcv/common/errors.hpp"
#include "lpcv/common/parallel.hpp"
#include "lpcv/linalg/dense.hpp"

namespace lpcv::quantize {

namespace {

struct Group {
  double loss = 0.0;
  std::int64_t dead = 0;
};

template <typename T>
Group gptq_group(const float* W0, const float* H0, std::int64_t g, std::int64_t M,
                 std::int64_t K, const float* scale, const std::int32_t* zp,
                 const GptqParams& p, const IntRange& range, T* qout, bool inner_parallel) {
  Group res;
  std::vector<float> Hm(H0, H0 + K * K);
  std::vector<float> Wm(W0, W0 + M * K);
  // 1. dead inputs
  for (std::int64_t i = 0; i < K; ++i) {
    if (Hm[i * K + i] == 0.0f) {
      Hm[i * K + i] = 1.0f;
      for (std::int64_t m = 0; m < M; ++m) Wm[m * K + i] = 0.0f;
      ++res.dead;
    }
  }
  // 2. act_order permutation
  std::vector<std::int64_t> perm(static_cast<std::size_t>(K));
  std::iota(perm.begin(), perm.end(), 0);
  if (p.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](std::int64_t a, std::int64_t b) {
      return Hm[a * K + a] > Hm[b * K + b];
    });
    std::vector<float> Hp(static_cast<std::size_t>(K * K)), Wp(static_cast<std::size_t>(M * K));
    for (std::int64_t i = 0; i < K; ++i)
      for (std::int64_t j = 0; j < K; ++j) Hp[i * K + j] = Hm[perm[i] * K + perm[j]];
    for (std::int64_t m = 0; m < M; ++m)
      for (std::int64_t j = 0; j < K; ++j) Wp[m * K + j] = Wm[m * K + perm[j]];
    Hm.swap(Hp);
    Wm.swap(Wp);
  }
  // 3. dampening
  double mean_diag = 0.0;
  for (std::int64_t i = 0; i < K; ++i) mean_diag += Hm[i * K + i];
  mean_diag /= static_cast<double>(K);
  const float lambda = static_cast<float>(p.damp * mean_diag);
  for (std::int64_t i = 0; i < K; ++i) Hm[i * K + i] += lambda;
  // 4. U^T U = H^{-1}
  std::vector<float> U(static_cast<std::size_t>(K * K));
  if (!linalg::inverse_cholesky_upper(Hm.data(), K, U.data()))
    throw InvalidArgument(cat("hessian of group ", g,
                              " is not positive definite after dampening (damp=", p.damp,
                              "); increase damp"));
  Hm.clear();
  Hm.shrink_to_fit();
  // 5. blocks
  const std::int64_t B = std::min<std::int64_t>(p.block_size, K);
  std::vector<float> Err(static_cast<std::size_t>(M * B));
  std::vector<std::int32_t> Q(static_cast<std::size_t>(M * K));
  std::vector<double> row_loss(static_cast<std::size_t>(M), 0.0);
  const float qmin = static_cast<float>(range.qmin), qmax = static_cast<float>(range.qmax);
  for (std::int64_t i1 = 0; i1 < K; i1 += B) {
    const std::int64_t nb = std::min(B, K - i1);
    auto row = [&](std::int64_t m) {
      float* w = Wm.data() + m * K + i1;
      float* e = Err.data() + m * nb;
      const float s = scale[m];
      const float z = static_cast<float>(zp[m]);
      double l = 0.0;
      for (std::int64_t i = 0; i < nb; ++i) {
        const float* u = U.data() + (i1 + i) * K + i1;
        const float qv = std::clamp(std::nearbyint(w[i] / s) + z, qmin, qmax);
        const float deq = (qv - z) * s;
        const float ei = (w[i] - deq) / u[i];
        Q[m * K + i1 + i] = static_cast<std::int32_t>(qv);
        e[i] = ei;
        l += static_cast<double>(ei) * ei;
        for (std::int64_t j = i + 1; j < nb; ++j) w[j] -= ei * u[j];
      }
      row_loss[m] += l;
    };
    if (inner_parallel) {
      // dynamic chunks: on a shared machine a descheduled thread's rows are
      // taken over by the others
      constexpr std::int64_t kRows = 32;
      parallel_for_dynamic((M + kRows - 1) / kRows, [&](std::int64_t c) {
        for (std::int64_t m = c * kRows; m < std::min(M, (c + 1) * kRows); ++m) row(m);
      }, 2);
    } else {
      for (std::int64_t m = 0; m < M; ++m) row(m);
    }
    const std::int64_t rest = K - i1 - nb;
    if (rest > 0)
      linalg::sgemm(false, false, M, rest, nb, -1.0f, Err.data(), nb, U.data() + i1 * K + i1 + nb,
                    K, 1.0f, Wm.data() + i1 + nb, K);
  }
  for (std::int64_t m = 0; m < M; ++m) res.loss += row_loss[m] / 2.0;
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t j = 0; j < K; ++j) qout[m * K + perm[j]] = static_cast<T>(Q[m * K + j]);
  return res;
}

// Throws unless H (K x K) is symmetric up to float rounding; tiled so both
// triangles are read cache-friendly.
void check_symmetric(const float* H, std::int64_t K, std::int64_t g) {
  float maxdiag = 0.0f;
  for (std::int64_t i = 0; i < K; ++i) maxdiag = std::max(maxdiag, std::abs(H[i * K + i]));
  const float atol = 1e-6f * maxdiag;
  constexpr std::int64_t T = 64;
  for (std::int64_t i0 = 0; i0 < K; i0 += T)
    for (std::int64_t j0 = 0; j0 <= i0; j0 += T)
      for (std::int64_t i = i0; i < std::min(K, i0 + T); ++i)
        for (std::int64_t j = j0; j < std::min(i, j0 + T); ++j) {
          const float a = H[i * K + j], b = H[j * K + i];
          if (!(std::abs(a - b) <= atol + 1e-4f * (std::abs(a) + std::abs(b))))
            throw InvalidArgument(cat("hessian must be symmetric: H[", g, ", ", i, ", ", j,
                                      "] = ", a, " but H[", g, ", ", j, ", ", i, "] = ", b));
        }
}

bool finite(const float* x, std::int64_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (std::int64_t i = 0; i < n; ++i) acc += x[i] * 0.0f;
  return acc == 0.0f;
}

}  // namespace

template <typename T>
GptqResult gptq(const float* W, const float* H, std::int64_t G, std::int64_t M, std::int64_t K,
                const float* scale, const std::int32_t* zp, const GptqParams& p, T* q) {
  if (G < 1 || M < 1 || K < 1)
    throw ShapeError(cat("gptq: weights must be non-empty, got (G, M, K) = (", G, ", ", M, ", ",
                         K, ")"));
  if (p.block_size < 1)
    throw InvalidArgument(cat("block_size must be >= 1, got ", p.block_size));
  if (!(p.damp >= 0.0) || !std::isfinite(p.damp))
    throw InvalidArgument(cat("damp must be a finite number >= 0, got ", p.damp));
  Scheme s = p.scheme;
  s.symmetric = false;
  const IntRange range = int_range(s);
  if (std::is_signed_v<T> != s.is_signed || (s.bits <= 8) != (sizeof(T) == 1))
    throw InvalidArgument("gptq: output integer type does not match the scheme");
  check_params(scale, zp, G * M, s);
  if (!finite(W, G * M * K)) throw InvalidArgument("w contains NaN or Inf values");
  if (!finite(H, G * K * K)) throw InvalidArgument("hessian contains NaN or Inf values");
  parallel_for(G, [&](std::int64_t g) { check_symmetric(H + g * K * K, K, g); });
  for (std::int64_t g = 0; g < G; ++g)
    for (std::int64_t i = 0; i < K; ++i)
      if (H[(g * K + i) * K + i] < 0.0f)
        throw InvalidArgument(cat("hessian has a negative diagonal entry ",
                                  H[(g * K + i) * K + i], " at group ", g, ", index ", i,
                                  " (a Hessian X^T X is positive semi-definite)"));
  GptqResult r;
  r.loss.assign(static_cast<std::size_t>(G), 0.0);
  r.dead_columns.assign(static_cast<std::size_t>(G), 0);
  auto one = [&](std::int64_t g, bool inner) {
    Group res = gptq_group<T>(W + g * M * K, H + g * K * K, g, M, K, scale + g * M, zp + g * M,
                              p, range, q + g * M * K, inner);
    r.loss[g] = res.loss;
    r.dead_columns[g] = res.dead;
  };
  if (G > 1 && G >= omp_get_max_threads())
    parallel_for_dynamic(G, [&](std::int64_t g) { one(g, false); });
  else
    for (std::int64_t g = 0; g < G; ++g) one(g, true);
  return r;
}

#define LPCV_GPTQ(T)                                                                        \
  template GptqResult gptq<T>(const float*, const float*, std::int64_t, std::int64_t,      \
                              std::int64_t, const float*, const std::int32_t*,              \
                              const GptqParams&, T*);
LPCV_GPTQ(std::int8_t)
LPCV_GPTQ(std::uint8_t)
LPCV_GPTQ(std::int16_t)
LPCV_GPTQ(std::uint16_t)
#undef LPCV_GPTQ

}  // namespace lpcv::quantize
