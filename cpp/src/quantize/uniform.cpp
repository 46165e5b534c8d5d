// Uniform quantization kernels. See uniform.hpp for the exact arithmetic.
//
// Fast path: the tensor is a set of contiguous "runs" that share one
// parameter (scalar run) or walk the parameter array in step (vector run,
// e.g. per-channel on the last axis). Runs are at most kChunk elements and
// processed in parallel. The inner loops are branch-free and vectorize:
//   v = clamp(x / s, qmin - z, qmax - z); r = (v + 1.5*2^23) - 1.5*2^23
// The magic-constant trick rounds half to even under the default rounding
// mode for |v| < 2^22 (here |v| <= 65536 after the clamp), and
// round(clamp(v, a, b)) == clamp(round(v), a, b) for integer a, b, so the
// result equals saturate(nearbyint(x / s) + z) - z bit for bit.
#include "lpcv/quantize/uniform.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "lpcv/common/errors.hpp"
#include "lpcv/common/parallel.hpp"

namespace lpcv::quantize {
namespace {

constexpr std::int64_t kChunk = 16384;
constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23

inline float round_half_even(float v) { return (v + kMagic) - kMagic; }

/// Calls f(x_offset, length, param_offset, param_is_vector) for every run,
/// in parallel. Runs never overlap.
template <typename F>
void for_each_run(const Layout& L, F&& f) {
  const std::int64_t n = L.size();
  if (n == 0) return;
  const std::int64_t C = L.channels, G = L.group;
  const bool mode_a = L.granularity == Granularity::per_tensor || L.inner > 1;
  std::int64_t units, nchunk, chunk;
  if (mode_a) {
    chunk = kChunk;
    nchunk = (L.inner + chunk - 1) / chunk;
    units = L.outer * C * nchunk;
  } else {
    chunk = L.granularity == Granularity::per_group
                ? std::max<std::int64_t>(G, (kChunk / G) * G)
                : kChunk;
    nchunk = (C + chunk - 1) / chunk;
    units = L.outer * nchunk;
  }
  auto body = [&](std::int64_t u) {
    const std::int64_t k = u % nchunk;
    if (mode_a) {
      const std::int64_t r = u / nchunk, o = r / C, c = r % C;
      const std::int64_t i0 = k * chunk;
      const std::int64_t len = std::min(chunk, L.inner - i0);
      const std::int64_t xo = r * L.inner + i0;
      switch (L.granularity) {
        case Granularity::per_tensor: f(xo, len, 0, false); break;
        case Granularity::per_channel: f(xo, len, c, false); break;
        case Granularity::per_group:
          f(xo, len, (o * (C / G) + c / G) * L.inner + i0, true);
          break;
      }
    } else {
      const std::int64_t o = u / nchunk, c0 = k * chunk;
      const std::int64_t c1 = std::min(C, c0 + chunk);
      if (L.granularity == Granularity::per_channel) {
        f(o * C + c0, c1 - c0, c0, true);
      } else {
        for (std::int64_t c = c0; c < c1; c += G)
          f(o * C + c, G, o * (C / G) + c / G, false);
      }
    }
  };
  const std::int64_t grain = n < 4 * kChunk ? units + 1 : 2;
  parallel_for_dynamic(units, body, grain);
}

struct Prepared {
  std::vector<float> scale, lo, hi, zf;
};

/// Per-parameter float constants of the inner loops.
Prepared prepare(const float* scale, const std::int32_t* zp, std::int64_t n,
                 const IntRange& r) {
  Prepared p;
  p.scale.assign(scale, scale + n);
  p.lo.resize(n);
  p.hi.resize(n);
  p.zf.resize(n);
  for (std::int64_t k = 0; k < n; ++k) {
    p.lo[k] = static_cast<float>(r.qmin - zp[k]);
    p.hi[k] = static_cast<float>(r.qmax - zp[k]);
    p.zf[k] = static_cast<float>(zp[k]);
  }
  return p;
}

void check_finite_flag(float bad, const char* what) {
  if (bad != 0.0f)
    throw InvalidArgument(cat(what, ": input contains NaN or Inf"));
}

template <typename T>
constexpr bool kSignedT = std::numeric_limits<T>::is_signed;

}  // namespace

IntRange int_range(const Scheme& s) {
  if (s.bits < 2 || s.bits > 16)
    throw InvalidArgument(cat("bits must be in 2..16, got ", s.bits));
  IntRange r;
  if (s.is_signed) {
    r.qmin = -(1 << (s.bits - 1));
    r.qmax = (1 << (s.bits - 1)) - 1;
  } else {
    r.qmin = 0;
    r.qmax = (1 << s.bits) - 1;
  }
  if (s.narrow_range) r.qmin += 1;
  return r;
}

std::int64_t Layout::num_params() const {
  switch (granularity) {
    case Granularity::per_tensor: return 1;
    case Granularity::per_channel: return channels;
    case Granularity::per_group: return outer * (channels / group) * inner;
  }
  return 1;
}

Layout make_layout(const std::vector<std::int64_t>& shape,
                   Granularity granularity, int axis,
                   std::int64_t group_size) {
  const int rank = static_cast<int>(shape.size());
  Layout L;
  L.granularity = granularity;
  std::int64_t n = 1;
  for (auto d : shape) {
    if (d < 0) throw ShapeError(cat("negative extent ", d, " in shape"));
    n *= d;
  }
  if (granularity == Granularity::per_tensor) {
    L.inner = n;
    return L;
  }
  if (axis < -rank || axis >= rank)
    throw InvalidArgument(cat("axis must be in [", -rank, ", ", rank - 1,
                              "] for a rank-", rank, " tensor, got ", axis));
  if (axis < 0) axis += rank;
  L.outer = 1;
  L.inner = 1;
  for (int d = 0; d < axis; ++d) L.outer *= shape[d];
  for (int d = axis + 1; d < rank; ++d) L.inner *= shape[d];
  L.channels = shape[axis];
  if (granularity == Granularity::per_group) {
    if (group_size < 1)
      throw InvalidArgument(cat("group_size must be >= 1, got ", group_size));
    if (L.channels % group_size != 0)
      throw InvalidArgument(cat("group_size ", group_size,
                                " does not divide the extent ", L.channels,
                                " of axis ", axis));
    L.group = group_size;
  }
  return L;
}

void min_max(const float* x, const Layout& L, float* lo, float* hi) {
  if (L.size() == 0) throw InvalidArgument("min_max: empty tensor");
  const std::int64_t P = L.num_params();
  const int T = omp_get_max_threads();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> plo(static_cast<std::size_t>(T) * P, inf);
  std::vector<float> phi(static_cast<std::size_t>(T) * P, -inf);
  std::vector<float> pbad(T, 0.0f);
  for_each_run(L, [&](std::int64_t xo, std::int64_t len, std::int64_t po,
                      bool vec) {
    const int t = omp_get_thread_num();
    const float* xs = x + xo;
    float bad = 0.0f;
    if (!vec) {
      float l = inf, h = -inf;
#pragma omp simd reduction(min : l) reduction(max : h) reduction(+ : bad)
      for (std::int64_t i = 0; i < len; ++i) {
        const float v = xs[i];
        bad += v * 0.0f;  // NaN iff v is NaN or Inf
        l = v < l ? v : l;
        h = v > h ? v : h;
      }
      float& L0 = plo[t * P + po];
      float& H0 = phi[t * P + po];
      L0 = std::min(L0, l);
      H0 = std::max(H0, h);
    } else {
      float* pl = plo.data() + t * P + po;
      float* ph = phi.data() + t * P + po;
#pragma omp simd reduction(+ : bad)
      for (std::int64_t i = 0; i < len; ++i) {
        const float v = xs[i];
        bad += v * 0.0f;
        pl[i] = v < pl[i] ? v : pl[i];
        ph[i] = v > ph[i] ? v : ph[i];
      }
    }
    if (bad != 0.0f || std::isnan(bad)) pbad[t] = 1.0f;
  });
  for (int t = 0; t < T; ++t) check_finite_flag(pbad[t], "min_max");
  for (std::int64_t p = 0; p < P; ++p) {
    float l = inf, h = -inf;
    for (int t = 0; t < T; ++t) {
      l = std::min(l, plo[t * P + p]);
      h = std::max(h, phi[t * P + p]);
    }
    lo[p] = l;
    hi[p] = h;
  }
}

void params_from_range(const float* lo, const float* hi, std::int64_t n,
                       const Scheme& scheme, float* scale,
                       std::int32_t* zero_point) {
  const IntRange r = int_range(scheme);
  for (std::int64_t k = 0; k < n; ++k) {
    const float l = lo[k], h = hi[k];
    if (!std::isfinite(l) || !std::isfinite(h) || l > h)
      throw InvalidArgument(cat("invalid range [", l, ", ", h, "] at index ",
                                k, ": expected finite lo <= hi"));
    float s;
    if (l == h) {
      s = l == 0.0f ? 1.0f : std::fabs(l);
    } else if (scheme.symmetric) {
      const float amax = scheme.is_signed ? std::max(std::fabs(l), std::fabs(h))
                                          : std::max(h, 0.0f);
      s = amax == 0.0f ? 1.0f : amax / static_cast<float>(r.qmax);
    } else {
      const float l0 = std::min(l, 0.0f), h0 = std::max(h, 0.0f);
      s = (h0 - l0) / static_cast<float>(r.qmax - r.qmin);
    }
    if (scheme.power_of_two && s > 0.0f && std::isfinite(s)) {
      int e;
      const float m = std::frexp(s, &e);
      s = m == 0.5f ? s : std::ldexp(1.0f, e);
    }
    if (!(s > 0.0f)) s = std::numeric_limits<float>::denorm_min();
    if (!std::isfinite(s))
      throw InvalidArgument(cat("range [", l, ", ", h, "] at index ", k,
                                " is too wide for float32 scales"));
    std::int32_t z = 0;
    if (!scheme.symmetric) {
      const float l0 = std::min(l, 0.0f);
      const float zq = static_cast<float>(r.qmin) - std::nearbyint(l0 / s);
      z = static_cast<std::int32_t>(
          std::clamp(zq, static_cast<float>(r.qmin), static_cast<float>(r.qmax)));
    }
    scale[k] = s;
    zero_point[k] = z;
  }
}

void check_params(const float* scale, const std::int32_t* zp, std::int64_t n,
                  const Scheme& scheme) {
  const IntRange r = int_range(scheme);
  for (std::int64_t k = 0; k < n; ++k) {
    if (!(scale[k] > 0.0f) || !std::isfinite(scale[k]))
      throw InvalidArgument(cat("scale must be finite and > 0, got ",
                                scale[k], " at index ", k));
    if (scheme.symmetric && zp[k] != 0)
      throw InvalidArgument(cat("zero_point must be 0 for a symmetric scheme, got ",
                                zp[k], " at index ", k));
    if (!scheme.symmetric && (zp[k] < r.qmin || zp[k] > r.qmax))
      throw InvalidArgument(cat("zero_point must be in [", r.qmin, ", ", r.qmax,
                                "], got ", zp[k], " at index ", k));
  }
}

void fake_quantize(const float* x, float* y, const Layout& L,
                   const float* scale, const std::int32_t* zp,
                   const Scheme& scheme) {
  const IntRange r = int_range(scheme);
  const Prepared p = prepare(scale, zp, L.num_params(), r);
  const int T = omp_get_max_threads();
  std::vector<float> pbad(T, 0.0f);
  for_each_run(L, [&](std::int64_t xo, std::int64_t len, std::int64_t po,
                      bool vec) {
    const float* xs = x + xo;
    float* ys = y + xo;
    float bad = 0.0f;
    if (!vec) {
      const float s = p.scale[po], lo = p.lo[po], hi = p.hi[po];
#pragma omp simd reduction(+ : bad)
      for (std::int64_t i = 0; i < len; ++i) {
        const float xi = xs[i];
        bad += xi * 0.0f;
        float v = xi / s;
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        ys[i] = round_half_even(v) * s;
      }
    } else {
      const float* s = p.scale.data() + po;
      const float* lo = p.lo.data() + po;
      const float* hi = p.hi.data() + po;
#pragma omp simd reduction(+ : bad)
      for (std::int64_t i = 0; i < len; ++i) {
        const float xi = xs[i];
        bad += xi * 0.0f;
        float v = xi / s[i];
        v = v < lo[i] ? lo[i] : v;
        v = v > hi[i] ? hi[i] : v;
        ys[i] = round_half_even(v) * s[i];
      }
    }
    if (bad != 0.0f || std::isnan(bad)) pbad[omp_get_thread_num()] = 1.0f;
  });
  for (int t = 0; t < T; ++t) check_finite_flag(pbad[t], "fake_quantize");
}

template <typename T>
void quantize(const float* x, T* q, const Layout& L, const float* scale,
              const std::int32_t* zp, const Scheme& scheme) {
  const IntRange r = int_range(scheme);
  if (kSignedT<T> != scheme.is_signed || 8 * sizeof(T) < static_cast<std::size_t>(scheme.bits))
    throw InvalidArgument(cat("quantize: integer type (", 8 * sizeof(T),
                              " bits, signed=", kSignedT<T>,
                              ") cannot hold the scheme's grid"));
  const Prepared p = prepare(scale, zp, L.num_params(), r);
  const int Tn = omp_get_max_threads();
  std::vector<float> pbad(Tn, 0.0f);
  for_each_run(L, [&](std::int64_t xo, std::int64_t len, std::int64_t po,
                      bool vec) {
    const float* xs = x + xo;
    T* qs = q + xo;
    float bad = 0.0f;
    if (!vec) {
      const float s = p.scale[po], lo = p.lo[po], hi = p.hi[po], z = p.zf[po];
#pragma omp simd reduction(+ : bad)
      for (std::int64_t i = 0; i < len; ++i) {
        const float xi = xs[i];
        bad += xi * 0.0f;
        float v = xi / s;
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        qs[i] = static_cast<T>(static_cast<std::int32_t>(round_half_even(v) + z));
      }
    } else {
      const float* s = p.scale.data() + po;
      const float* lo = p.lo.data() + po;
      const float* hi = p.hi.data() + po;
      const float* z = p.zf.data() + po;
#pragma omp simd reduction(+ : bad)
      for (std::int64_t i = 0; i < len; ++i) {
        const float xi = xs[i];
        bad += xi * 0.0f;
        float v = xi / s[i];
        v = v < lo[i] ? lo[i] : v;
        v = v > hi[i] ? hi[i] : v;
        qs[i] = static_cast<T>(static_cast<std::int32_t>(round_half_even(v) + z[i]));
      }
    }
    if (bad != 0.0f || std::isnan(bad)) pbad[omp_get_thread_num()] = 1.0f;
  });
  for (int t = 0; t < Tn; ++t) check_finite_flag(pbad[t], "quantize");
}

template <typename T>
void dequantize(const T* q, float* y, const Layout& L, const float* scale,
                const std::int32_t* zp) {
  const std::int64_t P = L.num_params();
  for (std::int64_t k = 0; k < P; ++k)
    if (!(scale[k] > 0.0f) || !std::isfinite(scale[k]))
      throw InvalidArgument(cat("scale must be finite and > 0, got ",
                                scale[k], " at index ", k));
  std::vector<float> zf(zp, zp + P);
  for_each_run(L, [&](std::int64_t xo, std::int64_t len, std::int64_t po,
                      bool vec) {
    const T* qs = q + xo;
    float* ys = y + xo;
    if (!vec) {
      const float s = scale[po], z = zf[po];
#pragma omp simd
      for (std::int64_t i = 0; i < len; ++i)
        ys[i] = (static_cast<float>(qs[i]) - z) * s;
    } else {
      const float* s = scale + po;
      const float* z = zf.data() + po;
#pragma omp simd
      for (std::int64_t i = 0; i < len; ++i)
        ys[i] = (static_cast<float>(qs[i]) - z[i]) * s[i];
    }
  });
}

template void quantize<std::int8_t>(const float*, std::int8_t*, const Layout&,
                                    const float*, const std::int32_t*, const Scheme&);
template void quantize<std::uint8_t>(const float*, std::uint8_t*, const Layout&,
                                     const float*, const std::int32_t*, const Scheme&);
template void quantize<std::int16_t>(const float*, std::int16_t*, const Layout&,
                                     const float*, const std::int32_t*, const Scheme&);
template void quantize<std::uint16_t>(const float*, std::uint16_t*, const Layout&,
                                      const float*, const std::int32_t*, const Scheme&);
template void dequantize<std::int8_t>(const std::int8_t*, float*, const Layout&,
                                      const float*, const std::int32_t*);
template void dequantize<std::uint8_t>(const std::uint8_t*, float*, const Layout&,
                                       const float*, const std::int32_t*);
template void dequantize<std::int16_t>(const std::int16_t*, float*, const Layout&,
                                       const float*, const std::int32_t*);
template void dequantize<std::uint16_t>(const std::uint16_t*, float*, const Layout&,
                                        const float*, const std::int32_t*);

void pack_int4(const std::int8_t* q, std::int64_t n, bool is_signed,
               std::uint8_t* out) {
  const int lo = is_signed ? -8 : 0, hi = is_signed ? 7 : 15;
  for (std::int64_t i = 0; i < n; ++i)
    if (q[i] < lo || q[i] > hi)
      throw InvalidArgument(cat("pack_int4: value ", int(q[i]), " at index ", i,
                                " is outside [", lo, ", ", hi, "]"));
  const std::int64_t pairs = n / 2;
#pragma omp simd
  for (std::int64_t k = 0; k < pairs; ++k)
    out[k] = static_cast<std::uint8_t>((q[2 * k] & 0x0F) | ((q[2 * k + 1] & 0x0F) << 4));
  if (n % 2) out[pairs] = static_cast<std::uint8_t>(q[n - 1] & 0x0F);
}

void unpack_int4(const std::uint8_t* packed, std::int64_t n, bool is_signed,
                 std::int8_t* out) {
  for (std::int64_t i = 0; i < n; ++i) {
    int v = (packed[i / 2] >> (4 * (i % 2))) & 0x0F;
    if (is_signed && v >= 8) v -= 16;
    out[i] = static_cast<std::int8_t>(v);
  }
}

// ---- reference oracles --------------------------------------------------

namespace {
std::int64_t ref_param_index(const Layout& L, std::int64_t e) {
  const std::int64_t i = e % L.inner;
  const std::int64_t c = (e / L.inner) % L.channels;
  const std::int64_t o = e / (L.inner * L.channels);
  switch (L.granularity) {
    case Granularity::per_tensor: return 0;
    case Granularity::per_channel: return c;
    case Granularity::per_group:
      return (o * (L.channels / L.group) + c / L.group) * L.inner + i;
  }
  return 0;
}
}  // namespace

void ref_min_max(const float* x, const Layout& L, float* lo, float* hi) {
  const std::int64_t P = L.num_params();
  for (std::int64_t p = 0; p < P; ++p) {
    lo[p] = std::numeric_limits<float>::infinity();
    hi[p] = -std::numeric_limits<float>::infinity();
  }
  for (std::int64_t e = 0; e < L.size(); ++e) {
    const std::int64_t p = ref_param_index(L, e);
    lo[p] = std::min(lo[p], x[e]);
    hi[p] = std::max(hi[p], x[e]);
  }
}

void ref_quantize_i32(const float* x, std::int32_t* q, const Layout& L,
                      const float* scale, const std::int32_t* zp,
                      const Scheme& scheme) {
  const IntRange r = int_range(scheme);
  for (std::int64_t e = 0; e < L.size(); ++e) {
    const std::int64_t p = ref_param_index(L, e);
    const float v = x[e] / scale[p];
    const double t = static_cast<double>(std::nearbyint(v)) + zp[p];
    q[e] = static_cast<std::int32_t>(std::clamp<double>(t, r.qmin, r.qmax));
  }
}

void ref_fake_quantize(const float* x, float* y, const Layout& L,
                       const float* scale, const std::int32_t* zp,
                       const Scheme& scheme) {
  std::vector<std::int32_t> q(L.size());
  ref_quantize_i32(x, q.data(), L, scale, zp, scheme);
  for (std::int64_t e = 0; e < L.size(); ++e) {
    const std::int64_t p = ref_param_index(L, e);
    y[e] = static_cast<float>(q[e] - zp[p]) * scale[p];
  }
}

}  // namespace lpcv::quantize
