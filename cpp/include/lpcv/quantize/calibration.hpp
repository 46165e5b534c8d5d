#pragma once
/// @file calibration.hpp
/// Range calibration in constant memory: a histogram kernel, exact re-binning
/// of a streaming histogram whose range grows, and range selection from a
/// histogram (percentile, MSE-optimal clipping, TensorRT-style entropy).
/// Needs only lpcv::common.
///
/// Bin convention (NumPy's): edges e[k] = lo + k * (hi - lo) / bins for
/// k < bins and e[bins] = hi; value v falls in bin k when e[k] <= v < e[k+1],
/// the last bin also holds v == hi; values outside [lo, hi] are not counted.
#include <cstdint>
#include <utility>
#include <vector>

#include "lpcv/quantize/uniform.hpp"

namespace lpcv::quantize {

/// Bin edges, float64 [bins + 1]. Throws InvalidArgument unless lo < hi are
/// finite and bins >= 1.
std::vector<double> histogram_edges(double lo, double hi, std::int64_t bins);

/// counts[k] += number of x in bin k (see the file comment). Parallel:
/// per-thread local histograms merged at the end.
/// @param x       float32 [n]
/// @param counts  int64 [bins], accumulated into
/// @return number of values counted (inside [lo, hi])
/// Throws InvalidArgument if x contains NaN or Inf.
std::int64_t histogram_add(const float* x, std::int64_t n, double lo,
                           double hi, std::int64_t bins, std::int64_t* counts);

/// Plain serial oracle of histogram_add (no NaN check).
std::int64_t ref_histogram_add(const float* x, std::int64_t n, double lo,
                               double hi, std::int64_t bins,
                               std::int64_t* counts);

/// A histogram over [lo, hi] with a fixed number of bins.
struct Histogram {
  double lo = 0.0;
  double hi = 1.0;
  std::vector<std::int64_t> counts;
};

/// Grows a histogram's range to cover [new_min, new_max] without changing
/// its number of bins, by exact re-binning: the new bin width is an integer
/// multiple k of the old one and the new lower edge lies on the old grid
/// (lo' = lo - j * w), so every old bin falls entirely inside one new bin and
/// its count moves there (no interpolation, no loss beyond the coarser bins).
/// k is the smallest integer that makes the range fit. With zero_centered
/// the range stays [-R, R] (bins must be even): j = (k - 1) * bins / 2.
/// A histogram that already covers the range is returned unchanged.
Histogram grow_histogram(const Histogram& h, double new_min, double new_max,
                         bool zero_centered);

/// Value below which a fraction q (0..1) of the counted values lie, linearly
/// interpolated inside the bin where the cumulative count crosses q * total.
double histogram_percentile(const Histogram& h, double q);

/// Expected Lp quantization error sum_k counts[k] * |c_k - Q(c_k)|^p over
/// bin centers c_k, for the grid of `scheme` on the clipping range [a, b]
/// (scale and zero point from params_from_range's formulas, in double).
double histogram_quant_error(const Histogram& h, double a, double b,
                             const Scheme& scheme, double p);

/// MSE-optimal (Lp) clipping range: among the candidates
/// [alpha * data_min, alpha * data_max], alpha = k / n_candidates,
/// k = 1..n_candidates (symmetric schemes: [-alpha * amax, alpha * amax],
/// or [0, alpha * max] unsigned), the one with the least
/// histogram_quant_error (the first on ties).
std::pair<double, double> mse_range(const Histogram& h, double data_min,
                                    double data_max, const Scheme& scheme,
                                    double p, int n_candidates);

/// TensorRT-style entropy calibration on a histogram of |x| (abs_counts,
/// bins of width `width` starting at 0): for every i in
/// [quant_bins, abs_counts.size()], P = abs_counts[:i] with the outlier count
/// sum(abs_counts[i:]) added to P[i-1]; Q = abs_counts[:i] merged into
/// quant_bins groups of i / quant_bins bins (integer division; the remainder
/// joins the last group) and expanded back evenly over the bins where P != 0;
/// returns the threshold i * width of the i minimizing KL(P || Q) =
/// sum_{P > 0} P log(P / Q) (P, Q normalized; +inf where Q = 0 < P; first
/// minimum on ties).
double entropy_threshold(const std::vector<std::int64_t>& abs_counts,
                         double width, std::int64_t quant_bins);

}  // namespace lpcv::quantize
