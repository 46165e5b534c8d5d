// Histogram calibration. See calibration.hpp for the definitions.
#include "lpcv/quantize/calibration.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "lpcv/common/errors.hpp"
#include "lpcv/common/parallel.hpp"

namespace lpcv::quantize {

std::vector<double> histogram_edges(double lo, double hi, std::int64_t bins) {
  if (bins < 1 || bins > (std::int64_t{1} << 30))
    throw InvalidArgument(cat("bins must be in [1, 2^30], got ", bins));
  if (!std::isfinite(lo) || !std::isfinite(hi) || !(lo < hi))
    throw InvalidArgument(cat("histogram range must be finite with lo < hi, got [",
                              lo, ", ", hi, "]"));
  if (!std::isfinite(hi - lo))
    throw InvalidArgument(cat("histogram range [", lo, ", ", hi, "] is too wide"));
  std::vector<double> e(bins + 1);
  const double step = (hi - lo) / static_cast<double>(bins);
  for (std::int64_t k = 0; k < bins; ++k) e[k] = static_cast<double>(k) * step + lo;
  e[bins] = hi;
  return e;
}

namespace {

}  // namespace

std::int64_t histogram_add(const float* x, std::int64_t n, double lo, double hi,
                           std::int64_t bins, std::int64_t* counts) {
  const std::vector<double> edges = histogram_edges(lo, hi, bins);
  // For float data v and a double edge e: v >= e  <=>  v >= up(e), where
  // up(e) is the smallest float >= e. So the float edges fe give exactly
  // the same bins as the double edges, and the whole kernel runs in float.
  std::vector<float> fe(bins + 2);
  for (std::int64_t k = 0; k <= bins; ++k) {
    float f = static_cast<float>(edges[k]);
    if (static_cast<double>(f) < edges[k])
      f = std::nextafter(f, std::numeric_limits<float>::infinity());
    fe[k] = f;
  }
  // v <= hi  <=>  v <= down(hi)
  float fhi = static_cast<float>(hi);
  if (static_cast<double>(fhi) > hi)
    fhi = std::nextafter(fhi, -std::numeric_limits<float>::infinity());
  fe[bins + 1] = std::numeric_limits<float>::infinity();  // sentinel
  const float flo = fe[0];
  const float fscale = static_cast<float>(static_cast<double>(bins) / (hi - lo));
  const float fmax_k = static_cast<float>(bins - 1);
  const std::int32_t trash = static_cast<std::int32_t>(bins);
  // Bound (in bins) of the error of the float guess (v - flo) * fscale:
  // rounding of flo, of the subtraction, of fscale and of the product.
  const double amax = std::max(std::fabs(lo), std::fabs(hi));
  const double err_bins =
      (2.0 * amax * 1.2e-7 + 1e-37) * static_cast<double>(bins) / (hi - lo) +
      4.0 * 1.2e-7 * static_cast<double>(bins) + 1e-6;
  const float eps = static_cast<float>(std::min(0.5, 2.0 * err_bins));
  const std::int32_t always_check = err_bins > 0.25 ? 1 : 0;
  constexpr std::int64_t kChunk = 1 << 16, kBlock = 256;
  const std::int64_t units = (n + kChunk - 1) / kChunk;
  const int T = omp_get_max_threads();
  const std::int64_t stride = bins + 1;  // + trash bin (outside range / NaN)
  std::vector<std::int64_t> local(static_cast<std::size_t>(T) * stride, 0);
  std::vector<float> bad(T, 0.0f);
  const float* fep = fe.data();
  const std::int64_t nb = bins;
  parallel_for_dynamic(units, [&, fep, nb](std::int64_t u) {
    const int t = omp_get_thread_num();
    std::int64_t* c = local.data() + static_cast<std::size_t>(t) * stride;
    const std::int64_t i0 = u * kChunk, i1 = std::min(n, i0 + kChunk);
    // local copies: the loops must see invariant scalars, not references
    const float lo_f = flo, hi_f = fhi, sc = fscale, kmax = fmax_k, ep = eps;
    const float ep_hi = 1.0f - eps;
    const std::int32_t tr = trash, always = always_check;
    std::int32_t idx[kBlock];
    std::int32_t near[kBlock];
    float fbad = 0.0f;
    for (std::int64_t b0 = i0; b0 < i1; b0 += kBlock) {
      const std::int64_t len = std::min(kBlock, i1 - b0);
      const float* xs = x + b0;
      // vector pass: guessed bin (the trash bin when outside [lo, hi]) and
      // whether the guess is within `eps` bins of an edge
#pragma omp simd reduction(+ : fbad)
      for (std::int64_t i = 0; i < len; ++i) {
        const float v = xs[i];
        fbad += v * 0.0f;
        float g = (v - lo_f) * sc;
        g = g < 0.0f ? 0.0f : g;
        g = g > kmax ? kmax : g;
        const std::int32_t k = static_cast<std::int32_t>(g);
        const float fr = g - static_cast<float>(k);
        const std::int32_t in = (v >= lo_f) & (v <= hi_f);
        idx[i] = in ? k : tr;
        near[i] = (fr < ep) | (fr > ep_hi) | always;
      }
      // scalar pass: exact correction against the edges near them, count
      for (std::int64_t i = 0; i < len; ++i) {
        std::int64_t k = idx[i];
        if (near[i] && k < nb) {
          const float v = xs[i];
          while (k > 0 && v < fep[k]) --k;
          while (k + 1 < nb && v >= fep[k + 1]) ++k;
        }
        ++c[k];
      }
    }
    if (fbad != 0.0f || std::isnan(fbad)) bad[t] = 1.0f;
  }, 2);
  for (int t = 0; t < T; ++t)
    if (bad[t] != 0.0f) throw InvalidArgument("histogram: input contains NaN or Inf");
  std::int64_t total = 0;
  for (int t = 0; t < T; ++t) {
    const std::int64_t* c = local.data() + static_cast<std::size_t>(t) * stride;
    for (std::int64_t k = 0; k < bins; ++k) {
      counts[k] += c[k];
      total += c[k];
    }
  }
  return total;
}

std::int64_t ref_histogram_add(const float* x, std::int64_t n, double lo,
                               double hi, std::int64_t bins,
                               std::int64_t* counts) {
  const std::vector<double> e = histogram_edges(lo, hi, bins);
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double d = x[i];
    if (!(d >= lo && d <= hi)) continue;
    // binary search: the last k with e[k] <= d, capped at bins - 1
    std::int64_t k = std::upper_bound(e.begin(), e.end(), d) - e.begin() - 1;
    if (k >= bins) k = bins - 1;
    ++counts[k];
    ++total;
  }
  return total;
}

Histogram grow_histogram(const Histogram& h, double new_min, double new_max,
                         bool zero_centered) {
  const std::int64_t B = static_cast<std::int64_t>(h.counts.size());
  if (B < 1) throw InvalidArgument("grow_histogram: empty histogram");
  if (!std::isfinite(new_min) || !std::isfinite(new_max) || new_min > new_max)
    throw InvalidArgument(cat("grow_histogram: bad range [", new_min, ", ", new_max, "]"));
  if (new_min >= h.lo && new_max <= h.hi) return h;
  const double w = (h.hi - h.lo) / static_cast<double>(B);
  double j, k;
  Histogram out;
  if (zero_centered) {
    if (B % 2) throw InvalidArgument("grow_histogram: zero-centered needs even bins");
    const double R = h.hi;
    const double need = std::max(std::fabs(new_min), std::fabs(new_max));
    k = std::ceil(need / R);
    while (k * R < need) k += 1;
    j = (k - 1) * static_cast<double>(B / 2);
    out.lo = -k * R;
    out.hi = k * R;
  } else {
    j = new_min < h.lo ? std::ceil((h.lo - new_min) / w) : 0.0;
    while (h.lo - j * w > new_min) j += 1;
    const double newlo = h.lo - j * w;
    k = std::max({1.0, std::ceil((new_max - newlo) / (static_cast<double>(B) * w)),
                  std::ceil((static_cast<double>(B) + j) / static_cast<double>(B))});
    while (newlo + k * static_cast<double>(B) * w < new_max) k += 1;
    out.lo = newlo;
    out.hi = newlo + k * static_cast<double>(B) * w;
  }
  if (!std::isfinite(out.lo) || !std::isfinite(out.hi))
    throw InvalidArgument("grow_histogram: range overflows float64");
  out.counts.assign(B, 0);
  if (k < 9.0e15 && j < 9.0e15) {
    const auto ki = static_cast<std::int64_t>(k), ji = static_cast<std::int64_t>(j);
    for (std::int64_t i = 0; i < B; ++i)
      out.counts[std::min(B - 1, (i + ji) / ki)] += h.counts[i];
  } else {  // astronomically larger range: move each old bin by its center
    const double nw = (out.hi - out.lo) / static_cast<double>(B);
    for (std::int64_t i = 0; i < B; ++i) {
      const double c = h.lo + (static_cast<double>(i) + 0.5) * w;
      const auto m = static_cast<std::int64_t>((c - out.lo) / nw);
      out.counts[std::clamp<std::int64_t>(m, 0, B - 1)] += h.counts[i];
    }
  }
  return out;
}

double histogram_percentile(const Histogram& h, double q) {
  if (!(q >= 0.0 && q <= 1.0))
    throw InvalidArgument(cat("percentile fraction must be in [0, 1], got ", q));
  const std::int64_t B = static_cast<std::int64_t>(h.counts.size());
  std::int64_t total = 0;
  for (auto c : h.counts) total += c;
  if (total == 0) throw InvalidArgument("percentile of an empty histogram");
  const std::vector<double> e = histogram_edges(h.lo, h.hi, B);
  const double r = q * static_cast<double>(total);
  double cum = 0.0;
  for (std::int64_t k = 0; k < B; ++k) {
    const double c = static_cast<double>(h.counts[k]);
    if (c > 0 && cum + c >= r) {
      const double frac = std::clamp((r - cum) / c, 0.0, 1.0);
      return e[k] + frac * (e[k + 1] - e[k]);
    }
    cum += c;
  }
  return h.hi;
}

namespace {
struct DGrid {
  double s, z, qmin, qmax;
};

DGrid grid_for(double a, double b, const Scheme& scheme) {
  const IntRange r = int_range(scheme);
  DGrid g{1.0, 0.0, static_cast<double>(r.qmin), static_cast<double>(r.qmax)};
  if (scheme.symmetric) {
    const double amax = scheme.is_signed ? std::max(std::fabs(a), std::fabs(b))
                                         : std::max(b, 0.0);
    g.s = amax / g.qmax;
  } else {
    const double a0 = std::min(a, 0.0), b0 = std::max(b, 0.0);
    g.s = (b0 - a0) / (g.qmax - g.qmin);
    if (g.s > 0) g.z = std::clamp(g.qmin - std::nearbyint(a0 / g.s), g.qmin, g.qmax);
  }
  if (!(g.s > 0)) g.s = std::numeric_limits<double>::min();
  return g;
}
}  // namespace

double histogram_quant_error(const Histogram& h, double a, double b,
                             const Scheme& scheme, double p) {
  const DGrid g = grid_for(a, b, scheme);
  const std::int64_t B = static_cast<std::int64_t>(h.counts.size());
  const double w = (h.hi - h.lo) / static_cast<double>(B);
  double err = 0.0;
  for (std::int64_t k = 0; k < B; ++k) {
    if (h.counts[k] == 0) continue;
    const double c = h.lo + (static_cast<double>(k) + 0.5) * w;
    const double q = std::clamp(std::nearbyint(c / g.s) + g.z, g.qmin, g.qmax);
    const double d = std::fabs(c - (q - g.z) * g.s);
    err += static_cast<double>(h.counts[k]) * (p == 2.0 ? d * d : std::pow(d, p));
  }
  return err;
}

std::pair<double, double> mse_range(const Histogram& h, double data_min,
                                    double data_max, const Scheme& scheme,
                                    double p, int n_candidates) {
  if (!(p > 0) || !std::isfinite(p))
    throw InvalidArgument(cat("p must be finite and > 0, got ", p));
  if (n_candidates < 1)
    throw InvalidArgument(cat("n_candidates must be >= 1, got ", n_candidates));
  const double amax = scheme.is_signed
                          ? std::max(std::fabs(data_min), std::fabs(data_max))
                          : std::max(data_max, 0.0);
  std::vector<double> errs(n_candidates);
  std::vector<std::pair<double, double>> cand(n_candidates);
  for (int k = 1; k <= n_candidates; ++k) {
    const double alpha = static_cast<double>(k) / n_candidates;
    if (scheme.symmetric)
      cand[k - 1] = scheme.is_signed ? std::make_pair(-alpha * amax, alpha * amax)
                                     : std::make_pair(0.0, alpha * amax);
    else
      cand[k - 1] = {alpha * data_min, alpha * data_max};
  }
  parallel_for(n_candidates, [&](std::int64_t k) {
    errs[k] = histogram_quant_error(h, cand[k].first, cand[k].second, scheme, p);
  }, 8);
  int best = 0;
  for (int k = 1; k < n_candidates; ++k)
    if (errs[k] < errs[best]) best = k;
  return cand[best];
}

double entropy_threshold(const std::vector<std::int64_t>& hist, double width,
                         std::int64_t nq) {
  const std::int64_t n = static_cast<std::int64_t>(hist.size());
  if (nq < 1 || n < nq)
    throw InvalidArgument(cat("entropy calibration needs at least ", nq,
                              " histogram bins of |x|, got ", n));
  const std::int64_t ncand = n - nq + 1;
  std::vector<double> kl(ncand);
  std::vector<double> suffix(n + 1, 0.0);
  for (std::int64_t k = n - 1; k >= 0; --k) suffix[k] = suffix[k + 1] + hist[k];
  parallel_for(ncand, [&](std::int64_t c) {
    const std::int64_t i = nq + c;
    std::vector<double> P(hist.begin(), hist.begin() + i), Q(i, 0.0);
    P[i - 1] += suffix[i];
    const std::int64_t m = i / nq;
    for (std::int64_t j = 0; j < nq; ++j) {
      const std::int64_t start = j * m, stop = j == nq - 1 ? i : start + m;
      double sum = 0.0;
      std::int64_t nz = 0;
      for (std::int64_t l = start; l < stop; ++l) {
        sum += static_cast<double>(hist[l]);
        nz += P[l] != 0.0;
      }
      if (nz)
        for (std::int64_t l = start; l < stop; ++l)
          if (P[l] != 0.0) Q[l] = sum / static_cast<double>(nz);
    }
    double sp = 0.0, sq = 0.0;
    for (std::int64_t l = 0; l < i; ++l) {
      sp += P[l];
      sq += Q[l];
    }
    double d = 0.0;
    if (sp == 0.0 || sq == 0.0) {
      d = std::numeric_limits<double>::infinity();
    } else {
      for (std::int64_t l = 0; l < i; ++l) {
        if (P[l] == 0.0) continue;
        const double p = P[l] / sp, q = Q[l] / sq;
        if (q == 0.0) {
          d = std::numeric_limits<double>::infinity();
          break;
        }
        d += p * std::log(p / q);
      }
    }
    kl[c] = d;
  }, 4);
  std::int64_t best = 0;
  for (std::int64_t c = 1; c < ncand; ++c)
    if (kl[c] < kl[best]) best = c;
  return static_cast<double>(nq + best) * width;
}

}  // namespace lpcv::quantize
