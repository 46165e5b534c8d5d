// AdaRound; see adaround.hpp for the objective.
//
// One step for group g: draw B rows (uniformly, with replacement; all rows
// in order when N <= B), gather them, Z = x^ W~^T + b (GEMM), E = f(Z) - T,
// dL/dW~ = (2/B) (E * f'(Z))^T x^ (GEMM), chain rule through the clamp and
// the rectified sigmoid, plus the regulariser, then Adam. Targets
// T = f(x W^T + b) are computed once for all rows when they fit in
// kTargetCacheBytes, otherwise per batch (one more GEMM). Groups run in
// parallel (serial GEMMs) when there are at least as many groups as
// threads, otherwise one after the other with threaded GEMMs.
#include "lpcv/quantize/adaround.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "lpcv/common/errors.hpp"
#include "lpcv/common/parallel.hpp"
#include "lpcv/linalg/dense.hpp"

namespace lpcv::quantize {

namespace {

constexpr float kZeta = 1.1f, kGamma = -0.1f;
constexpr double kAdamB1 = 0.9, kAdamB2 = 0.999, kAdamEps = 1e-8;
constexpr std::int64_t kTargetCacheBytes = std::int64_t(256) << 20;
constexpr std::int64_t kEvalChunk = 4096;

// Below this many multiply-adds per step (B * M * K) a step runs on one
// thread: the OpenMP fork/joins of a step (and, on a busy machine, waiting
// for a descheduled thread at each barrier) cost more than they save. On a
// 2-core machine under load, 1 thread was 1.7x faster at 38 M MACs and as
// fast at 600 M.
constexpr std::int64_t kSerialMacs = std::int64_t(1) << 27;

inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

inline float act(Activation a, float z) {
  switch (a) {
    case Activation::relu: return z > 0.0f ? z : 0.0f;
    case Activation::relu6: return z > 0.0f ? (z < 6.0f ? z : 6.0f) : 0.0f;
    default: return z;
  }
}
inline float act_grad(Activation a, float z) {
  switch (a) {
    case Activation::relu: return z > 0.0f ? 1.0f : 0.0f;
    case Activation::relu6: return (z > 0.0f && z < 6.0f) ? 1.0f : 0.0f;
    default: return 1.0f;
  }
}

bool finite(const float* x, std::int64_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (std::int64_t i = 0; i < n; ++i) acc += x[i] * 0.0f;
  return acc == 0.0f;
}

template <typename F>
void maybe_parallel(bool par, std::int64_t n, F&& f) {
  if (par) parallel_for(n, f, 8);
  else for (std::int64_t i = 0; i < n; ++i) f(i);
}

// Products with at most this many weights (M * K, e.g. depthwise 3 x 3) are
// plain loops: a library GEMM call costs more than the arithmetic.
constexpr std::int64_t kTinyWeights = 64;

// C (m x n) = A (m x k) B^T (B: n x k)
void gemm_nt(std::int64_t m, std::int64_t n, std::int64_t k, const float* A, const float* B,
             float* C) {
  if (n * k > kTinyWeights) {
    linalg::sgemm(false, true, m, n, k, 1.0f, A, k, B, k, 0.0f, C, n);
    return;
  }
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (std::int64_t l = 0; l < k; ++l) acc += A[i * k + l] * B[j * k + l];
      C[i * n + j] = acc;
    }
}

// C (n x k) = A^T B with A: m x n, B: m x k
void gemm_tn(std::int64_t m, std::int64_t n, std::int64_t k, const float* A, const float* B,
             float* C) {
  if (n * k > kTinyWeights) {
    linalg::sgemm(true, false, n, k, m, 1.0f, A, n, B, k, 0.0f, C, k);
    return;
  }
  std::fill(C, C + n * k, 0.0f);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      const float a = A[i * n + j];
      for (std::int64_t l = 0; l < k; ++l) C[j * k + l] += a * B[i * k + l];
    }
}

// Short rows are copied inline (a memcpy call costs more).
inline void copy_row(float* dst, const float* src, std::int64_t n) {
  if (n <= 16) {
    for (std::int64_t i = 0; i < n; ++i) dst[i] = src[i];
  } else {
    std::memcpy(dst, src, sizeof(float) * static_cast<std::size_t>(n));
  }
}

inline std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Y (rows x M) = f(Xr W^T + b) for the given rows of one group.
void forward(const float* Xr, std::int64_t rows, std::int64_t K, const float* Wg,
             std::int64_t M, const float* bias, Activation a, float* Y, bool apply_act) {
  gemm_nt(rows, M, K, Xr, Wg, Y);
  for (std::int64_t r = 0; r < rows; ++r) {
    float* y = Y + r * M;
    if (bias)
      for (std::int64_t m = 0; m < M; ++m) y[m] += bias[m];
    if (apply_act)
      for (std::int64_t m = 0; m < M; ++m) y[m] = act(a, y[m]);
  }
}

}  // namespace

RowRng::RowRng(std::uint64_t seed) {
  for (auto& v : s_) v = splitmix64(seed);
}

std::uint64_t RowRng::operator()() {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

struct AdaRound::Work {
  std::vector<float> Xb, Xqb, Z, T, Wt, D, Hv, GW;
  std::vector<std::int64_t> rows;
  std::vector<double> reg_rows;
  void reserve(std::int64_t B, std::int64_t M, std::int64_t K, bool separate_xq) {
    Xb.resize(static_cast<std::size_t>(B * K));
    if (separate_xq) Xqb.resize(static_cast<std::size_t>(B * K));
    Z.resize(static_cast<std::size_t>(B * M));
    T.resize(static_cast<std::size_t>(B * M));
    Wt.resize(static_cast<std::size_t>(M * K));
    D.resize(static_cast<std::size_t>(M * K));
    Hv.resize(static_cast<std::size_t>(M * K));
    GW.resize(static_cast<std::size_t>(M * K));
    rows.resize(static_cast<std::size_t>(B));
  }
};

AdaRound::AdaRound(const AdaRoundData& d, const AdaRoundParams& p) : d_(d), p_(p) {
  if (d.G < 1 || d.M < 1 || d.K < 1)
    throw ShapeError(cat("adaround: weights must be non-empty, got (G, M, K) = (", d.G, ", ",
                         d.M, ", ", d.K, ")"));
  if (d.N < 1) throw ShapeError("adaround: x has no rows");
  if (p.iters < 0) throw InvalidArgument(cat("iters must be >= 0, got ", p.iters));
  if (p.batch_size < 1) throw InvalidArgument(cat("batch_size must be >= 1, got ", p.batch_size));
  if (!(p.lr > 0.0) || !std::isfinite(p.lr))
    throw InvalidArgument(cat("lr must be finite and > 0, got ", p.lr));
  if (!(p.reg_weight >= 0.0) || !std::isfinite(p.reg_weight))
    throw InvalidArgument(cat("reg_weight must be finite and >= 0, got ", p.reg_weight));
  if (!(p.beta_start >= 1.0 && p.beta_end >= 1.0) || !std::isfinite(p.beta_start) ||
      !std::isfinite(p.beta_end))
    throw InvalidArgument(cat("beta values must be finite and >= 1, got (", p.beta_start, ", ",
                              p.beta_end, ")"));
  if (!(p.warm_start >= 0.0 && p.warm_start <= 1.0))
    throw InvalidArgument(cat("warm_start must be in [0, 1], got ", p.warm_start));
  Scheme s = p.scheme;
  s.symmetric = false;
  range_ = int_range(s);
  const std::int64_t G = d.G, M = d.M, K = d.K, N = d.N;
  check_params(d.scale, d.zero_point, G * M, s);
  if (!finite(d.W, G * M * K)) throw InvalidArgument("w contains NaN or Inf values");
  if (!finite(d.X, G * N * K)) throw InvalidArgument("x contains NaN or Inf values");
  if (d.Xq != d.X && !finite(d.Xq, G * N * K))
    throw InvalidArgument("x_quantized contains NaN or Inf values");
  if (d.bias && !finite(d.bias, G * M)) throw InvalidArgument("bias contains NaN or Inf values");

  const std::int64_t n = G * M * K;
  floor_.resize(static_cast<std::size_t>(n));
  V_.resize(static_cast<std::size_t>(n));
  m_.assign(static_cast<std::size_t>(n), 0.0f);
  v_.assign(static_cast<std::size_t>(n), 0.0f);
  parallel_for(G * M, [&](std::int64_t r) {
    const float sc = d.scale[r];
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t i = r * K + k;
      const float q = d.W[i] / sc;  // may overflow to +-inf for tiny scales
      const float f = std::floor(q);
      // Levels this far outside the grid clamp the same way (and stay
      // representable as integers): floor in [qmin - z - 2, qmax - z + 1].
      const float z = static_cast<float>(d.zero_point[r]);
      floor_[i] = std::clamp(f, static_cast<float>(range_.qmin) - z - 2.0f,
                             static_cast<float>(range_.qmax) - z + 1.0f);
      // h(V) = frac: sigmoid(V) = (frac - gamma) / (zeta - gamma) in [1/12, 11/12]
      const float frac = std::isfinite(q) ? std::clamp(q - f, 0.0f, 1.0f) : 0.0f;
      const float pr = (frac - kGamma) / (kZeta - kGamma);
      V_[i] = std::log(pr / (1.0f - pr));
    }
  }, 64);
  over_groups_ = G > 1 && G >= omp_get_max_threads();
  if (G * N * M * static_cast<std::int64_t>(sizeof(float)) <= kTargetCacheBytes) {
    target_.resize(static_cast<std::size_t>(G * N * M));
    maybe_parallel(over_groups_, G, [&](std::int64_t g) {
      forward(d.X + g * N * K, N, K, d.W + g * M * K, M, d.bias ? d.bias + g * M : nullptr,
              p.activation, target_.data() + g * N * M, true);
    });
  }
  rng_.reserve(static_cast<std::size_t>(G));
  for (std::int64_t g = 0; g < G; ++g) {
    std::uint64_t mix = p.seed;
    const std::uint64_t a = splitmix64(mix);
    rng_.emplace_back(a ^ (static_cast<std::uint64_t>(g) * 0xd1b54a32d192ed03ULL));
  }
  last_loss_.assign(static_cast<std::size_t>(G), std::numeric_limits<double>::quiet_NaN());
}

double AdaRound::evaluate(std::int64_t g, const float* V, const std::int64_t* rows,
                          std::int64_t nb, double beta, bool use_reg, float* grad, Work& w,
                          bool par) const {
  const std::int64_t M = d_.M, K = d_.K, N = d_.N;
  const float* sc = d_.scale + g * M;
  const std::int32_t* zp = d_.zero_point + g * M;
  const float* fl = floor_.data() + g * M * K;
  const float* bias = d_.bias ? d_.bias + g * M : nullptr;
  const float qmin = static_cast<float>(range_.qmin), qmax = static_cast<float>(range_.qmax);
  const bool sep = d_.Xq != d_.X;
  // soft weights, d W~ / d V (in D) and the regulariser's gradient (in Hv)
  const float lam = static_cast<float>(p_.reg_weight);
  const float b = static_cast<float>(beta);
  std::vector<double>& reg_rows = w.reg_rows;
  reg_rows.assign(static_cast<std::size_t>(M), 0.0);
  maybe_parallel(par, M, [&](std::int64_t m) {
    const float s = sc[m], z = static_cast<float>(zp[m]);
    double reg = 0.0;
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t i = m * K + k;
      const float sg = sigmoid(V[i]);
      const float u = sg * (kZeta - kGamma) + kGamma;
      const float h = std::clamp(u, 0.0f, 1.0f);
      const float dh = (u >= 0.0f && u <= 1.0f) ? (kZeta - kGamma) * sg * (1.0f - sg) : 0.0f;
      const float level = fl[i] + h + z;
      const float cl = std::clamp(level, qmin, qmax);
      w.Wt[i] = s * (cl - z);
      w.D[i] = (level >= qmin && level <= qmax) ? s * dh : 0.0f;
      float rg = 0.0f;
      if (use_reg) {
        // 1 - |2h-1|^b and its derivative -2 b |2h-1|^(b-1) sign(2h-1) dh/dV
        const float t = 2.0f * h - 1.0f;
        const float at = std::abs(t);
        const float pw = at > 0.0f ? std::pow(at, b - 1.0f) : (b == 1.0f ? 1.0f : 0.0f);
        reg += 1.0 - static_cast<double>(at) * pw;
        rg = at > 0.0f ? lam * (-2.0f * b * pw * (t > 0.0f ? 1.0f : -1.0f)) * dh : 0.0f;
      }
      w.Hv[i] = rg;
    }
    reg_rows[m] = reg;
  });
  // gather rows
  const float* Xg = d_.X + g * N * K;
  const float* Xqg = d_.Xq + g * N * K;
  maybe_parallel(par && nb * K > 65536, nb, [&](std::int64_t r) {
    copy_row(w.Xb.data() + r * K, Xg + rows[r] * K, K);
    if (sep) copy_row(w.Xqb.data() + r * K, Xqg + rows[r] * K, K);
  });
  const float* xq = sep ? w.Xqb.data() : w.Xb.data();
  // targets
  if (!target_.empty()) {
    const float* Tg = target_.data() + g * N * M;
    for (std::int64_t r = 0; r < nb; ++r)
      copy_row(w.T.data() + r * M, Tg + rows[r] * M, M);
  } else {
    forward(w.Xb.data(), nb, K, d_.W + g * M * K, M, bias, p_.activation, w.T.data(), true);
  }
  // forward of the soft-quantized layer, error, dL/dZ (in place in Z)
  forward(xq, nb, K, w.Wt.data(), M, bias, p_.activation, w.Z.data(), false);
  const float gscale = 2.0f / static_cast<float>(nb);
  double rec = 0.0;
  auto error_loop = [&](auto a) {
    for (std::int64_t i = 0; i < nb * M; ++i) {
      const float z = w.Z[i];
      const float e = act(a, z) - w.T[i];
      rec += static_cast<double>(e) * e;
      w.Z[i] = gscale * e * act_grad(a, z);
    }
  };
  switch (p_.activation) {
    case Activation::relu: error_loop(Activation::relu); break;
    case Activation::relu6: error_loop(Activation::relu6); break;
    default: error_loop(Activation::none); break;
  }
  rec /= static_cast<double>(nb);
  // dL/dW~ = dZ^T x^
  gemm_tn(nb, M, K, w.Z.data(), xq, w.GW.data());
  maybe_parallel(par, M, [&](std::int64_t m) {
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t i = m * K + k;
      grad[i] = w.GW[i] * w.D[i] + w.Hv[i];
    }
  });
  double reg = 0.0;
  for (double r : reg_rows) reg += r;
  return rec + (use_reg ? p_.reg_weight * reg : 0.0);
}

void AdaRound::step(std::int64_t g, Work& w, RowRng& rng, std::int64_t t) {
  const std::int64_t M = d_.M, K = d_.K, N = d_.N;
  const std::int64_t nb = std::min(p_.batch_size, N);
  if (N <= p_.batch_size) {
    for (std::int64_t r = 0; r < nb; ++r) w.rows[r] = r;
  } else {
    // uniform in [0, N): high 64 bits of a 64 x 64-bit product (bias < N / 2^64)
    const unsigned __int128 n = static_cast<std::uint64_t>(N);
    for (std::int64_t r = 0; r < nb; ++r)
      w.rows[r] = static_cast<std::int64_t>((static_cast<unsigned __int128>(rng()) * n) >> 64);
  }
  const double warm = p_.warm_start * static_cast<double>(p_.iters);
  const bool use_reg = static_cast<double>(t) >= warm;
  double beta = p_.beta_start;
  if (use_reg) {
    const double span = std::max(1.0, static_cast<double>(p_.iters) - warm);
    const double rel = (static_cast<double>(t) - warm) / span;
    beta = p_.beta_end + (p_.beta_start - p_.beta_end) * std::max(0.0, 1.0 - rel);
  }
  float* V = V_.data() + g * M * K;
  float* m1 = m_.data() + g * M * K;
  float* m2 = v_.data() + g * M * K;
  // gradient into the GW buffer's twin: reuse D after evaluate consumed it
  std::vector<float>& grad = w.D;  // evaluate reads D before writing grad[i] at the same i
  last_loss_[g] = evaluate(g, V, w.rows.data(), nb, beta, use_reg, grad.data(), w, !over_groups_);
  const double tt = static_cast<double>(t + 1);
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(kAdamB1, tt)));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(kAdamB2, tt)));
  const float lr = static_cast<float>(p_.lr);
  const float b1 = static_cast<float>(kAdamB1), b2 = static_cast<float>(kAdamB2);
  const float eps = static_cast<float>(kAdamEps);
  maybe_parallel(!over_groups_, M, [&](std::int64_t m) {
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t i = m * K + k;
      const float gr = grad[i];
      m1[i] = b1 * m1[i] + (1.0f - b1) * gr;
      m2[i] = b2 * m2[i] + (1.0f - b2) * gr * gr;
      V[i] -= lr * (m1[i] * c1) / (std::sqrt(m2[i] * c2) + eps);
    }
  });
}

void AdaRound::run(std::int64_t n) {
  if (n <= 0) return;
  const std::int64_t t_end = std::min(p_.iters, t_ + n);
  if (t_end <= t_) return;
  const std::int64_t B = std::min(p_.batch_size, d_.N);
  const bool sep = d_.Xq != d_.X;
  const std::int64_t t0 = t_;
  const bool small = B * d_.M * d_.K < kSerialMacs;
  std::unique_ptr<ThreadLimit> limit;
  if (small && !over_groups_) limit = std::make_unique<ThreadLimit>(1);
  auto group = [&](std::int64_t g) {
    Work w;
    w.reserve(B, d_.M, d_.K, sep);
    for (std::int64_t t = t0; t < t_end; ++t) step(g, w, rng_[g], t);
  };
  if (over_groups_) parallel_for_dynamic(d_.G, group);
  else for (std::int64_t g = 0; g < d_.G; ++g) group(g);
  t_ = t_end;
}

double AdaRound::loss_and_grad(std::int64_t g, const float* V, const std::int64_t* rows,
                               std::int64_t n_rows, double beta, bool use_reg,
                               float* grad) const {
  if (g < 0 || g >= d_.G) throw InvalidArgument(cat("group ", g, " out of range"));
  if (n_rows < 1) throw InvalidArgument("loss_and_grad: no rows");
  for (std::int64_t r = 0; r < n_rows; ++r)
    if (rows[r] < 0 || rows[r] >= d_.N) throw InvalidArgument(cat("row ", rows[r], " out of range"));
  Work w;
  w.reserve(n_rows, d_.M, d_.K, d_.Xq != d_.X);
  std::vector<float> gtmp(static_cast<std::size_t>(d_.M * d_.K));
  const double l = evaluate(g, V, rows, n_rows, beta, use_reg, gtmp.data(), w, true);
  std::copy(gtmp.begin(), gtmp.end(), grad);
  return l;
}

void AdaRound::rounded(std::int32_t* q) const {
  const std::int64_t K = d_.K;
  parallel_for(d_.G * d_.M, [&](std::int64_t r) {
    const std::int32_t z = d_.zero_point[r];
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t i = r * K + k;
      const float sg = sigmoid(V_[i]);
      const float h = std::clamp(sg * (kZeta - kGamma) + kGamma, 0.0f, 1.0f);
      const std::int64_t level = static_cast<std::int64_t>(floor_[i]) + (h >= 0.5f ? 1 : 0) + z;
      q[i] = static_cast<std::int32_t>(
          std::clamp<std::int64_t>(level, range_.qmin, range_.qmax));
    }
  }, 64);
}

void AdaRound::nearest(std::int32_t* q) const {
  const std::int64_t K = d_.K;
  parallel_for(d_.G * d_.M, [&](std::int64_t r) {
    const float s = d_.scale[r];
    const float z = static_cast<float>(d_.zero_point[r]);
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t i = r * K + k;
      q[i] = static_cast<std::int32_t>(std::clamp(std::nearbyint(d_.W[i] / s) + z,
                                                  static_cast<float>(range_.qmin),
                                                  static_cast<float>(range_.qmax)));
    }
  }, 64);
}

std::vector<double> AdaRound::output_error(const std::int32_t* q) const {
  const std::int64_t G = d_.G, M = d_.M, K = d_.K, N = d_.N;
  std::vector<double> err(static_cast<std::size_t>(G), 0.0);
  auto group = [&](std::int64_t g) {
    std::vector<float> Wq(static_cast<std::size_t>(M * K));
    for (std::int64_t m = 0; m < M; ++m) {
      const float s = d_.scale[g * M + m];
      const std::int32_t z = d_.zero_point[g * M + m];
      for (std::int64_t k = 0; k < K; ++k)
        Wq[m * K + k] = s * static_cast<float>(q[(g * M + m) * K + k] - z);
    }
    const float* bias = d_.bias ? d_.bias + g * M : nullptr;
    const std::int64_t chunk = std::min(N, kEvalChunk);
    std::vector<float> Y(static_cast<std::size_t>(chunk * M)), T(static_cast<std::size_t>(chunk * M));
    double e = 0.0;
    for (std::int64_t r0 = 0; r0 < N; r0 += chunk) {
      const std::int64_t nr = std::min(chunk, N - r0);
      forward(d_.Xq + (g * N + r0) * K, nr, K, Wq.data(), M, bias, p_.activation, Y.data(), true);
      const float* Tp;
      if (!target_.empty()) {
        Tp = target_.data() + (g * N + r0) * M;
      } else {
        forward(d_.X + (g * N + r0) * K, nr, K, d_.W + g * M * K, M, bias, p_.activation,
                T.data(), true);
        Tp = T.data();
      }
      for (std::int64_t i = 0; i < nr * M; ++i) {
        const double diff = static_cast<double>(Y[i]) - Tp[i];
        e += diff * diff;
      }
    }
    err[g] = e / static_cast<double>(N);
  };
  if (over_groups_) parallel_for_dynamic(G, group);
  else for (std::int64_t g = 0; g < G; ++g) group(g);
  return err;
}

}  // namespace lpcv::quantize
