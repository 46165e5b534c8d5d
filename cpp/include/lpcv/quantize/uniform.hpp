#pragma once
/// @file uniform.hpp
/// Uniform (affine) quantization of float32 tensors: scale/zero-point from
/// min/max, fake-quantization, quantization to integers, dequantization and
/// int4 packing. Needs only lpcv::common (DESIGN.md §1).
///
/// Conventions (the ONNX QuantizeLinear / DequantizeLinear ones):
///   q = saturate(round(x / scale) + zero_point, qmin, qmax)
///   x' = (q - zero_point) * scale
/// where round() is round-half-to-even (IEEE default rounding, what ONNX and
/// onnxruntime use) and the division is an IEEE float32 division. Every
/// kernel computes exactly this, element by element, so results are bitwise
/// reproducible and match the plain ref_ oracles.
#include <cstdint>
#include <vector>

namespace lpcv::quantize {

/// How the quantization grid is chosen.
struct Scheme {
  int bits = 8;               ///< 2..16
  bool is_signed = true;      ///< signed [-2^(b-1), 2^(b-1)-1] or [0, 2^b-1]
  bool symmetric = true;      ///< zero_point = 0
  bool narrow_range = false;  ///< drop the most negative level (signed) or 0 (unsigned)
  bool power_of_two = false;  ///< round scales up to a power of two
};

/// Integer grid [qmin, qmax] of a scheme. Throws InvalidArgument for bits
/// outside 2..16.
struct IntRange {
  std::int32_t qmin;
  std::int32_t qmax;
};
IntRange int_range(const Scheme& scheme);

/// Which elements share one (scale, zero_point).
enum class Granularity { per_tensor, per_channel, per_group };

/// A tensor seen as [outer, channels, inner] around the quantization axis.
/// Parameters are laid out as:
///   per_tensor  : 1
///   per_channel : channels                    (index c)
///   per_group   : outer * (channels/group) * inner, C order over
///                 (o, c / group, i): groups of `group` consecutive
///                 elements along the axis.
struct Layout {
  Granularity granularity = Granularity::per_tensor;
  std::int64_t outer = 1;
  std::int64_t channels = 1;
  std::int64_t inner = 1;
  std::int64_t group = 1;
  /// Number of elements.
  std::int64_t size() const { return outer * channels * inner; }
  /// Number of (scale, zero_point) pairs.
  std::int64_t num_params() const;
};

/// Builds a Layout for a C-contiguous tensor.
/// @param shape       tensor shape (rank >= 0; rank 0 only per_tensor)
/// @param granularity see Layout
/// @param axis        quantization axis, negative counts from the end
///                    (ignored for per_tensor)
/// @param group_size  group length along the axis (per_group only); must
///                    divide shape[axis]
Layout make_layout(const std::vector<std::int64_t>& shape,
                   Granularity granularity, int axis, std::int64_t group_size);

/// Per-parameter minimum and maximum of x.
/// @param x   float32 [layout.size()], C order
/// @param lo  float32 [layout.num_params()] output
/// @param hi  float32 [layout.num_params()] output
/// Throws InvalidArgument if x contains NaN or Inf or is empty.
void min_max(const float* x, const Layout& layout, float* lo, float* hi);

/// Scale and zero point from per-parameter ranges [lo, hi].
///   symmetric signed:   scale = max(|lo|, |hi|) / qmax, zero_point = 0
///   symmetric unsigned: scale = max(hi, 0) / qmax,      zero_point = 0
///   asymmetric:         lo' = min(lo, 0), hi' = max(hi, 0),
///                       scale = (hi' - lo') / (qmax - qmin),
///                       zero_point = clamp(qmin - round(lo' / scale))
/// All in float32 arithmetic. A constant range (lo == hi == c) gets
/// scale = |c| (1 when c = 0) so constant tensors round-trip exactly.
/// power_of_two rounds the scale up to 2^ceil(log2 scale) (zero point
/// recomputed). A scale that underflows to 0 becomes the smallest denormal.
/// @param lo, hi      float32 [n]
/// @param scale       float32 [n] output
/// @param zero_point  int32 [n] output
void params_from_range(const float* lo, const float* hi, std::int64_t n,
                       const Scheme& scheme, float* scale,
                       std::int32_t* zero_point);

/// Checks user-given parameters: scale finite and > 0, zero_point within
/// [qmin, qmax] (and 0 when symmetric). Throws InvalidArgument.
void check_params(const float* scale, const std::int32_t* zero_point,
                  std::int64_t n, const Scheme& scheme);

/// Fake quantization y = (saturate(round(x/s) + z) - z) * s.
/// @param x  float32 [layout.size()]; y may alias x
/// @param scale, zero_point  [layout.num_params()]
/// Throws InvalidArgument if x contains NaN or Inf (y is then unspecified).
void fake_quantize(const float* x, float* y, const Layout& layout,
                   const float* scale, const std::int32_t* zero_point,
                   const Scheme& scheme);

/// Quantization to integers q = saturate(round(x/s) + z).
/// T is int8_t / uint8_t (bits <= 8) or int16_t / uint16_t (bits <= 16);
/// its signedness must match the scheme.
template <typename T>
void quantize(const float* x, T* q, const Layout& layout, const float* scale,
              const std::int32_t* zero_point, const Scheme& scheme);

/// Dequantization y = (q - z) * s, T as for quantize (any of the four).
template <typename T>
void dequantize(const T* q, float* y, const Layout& layout,
                const float* scale, const std::int32_t* zero_point);

/// Packs n 4-bit values two per byte, low nibble first: byte k holds
/// element 2k in bits 0..3 and element 2k+1 in bits 4..7 (two's complement
/// for signed values; the ONNX INT4/UINT4 layout). An odd n leaves the last
/// high nibble 0.
/// @param q    int8 [n] with values in [-8, 7] (is_signed) or [0, 15]
/// @param out  uint8 [(n + 1) / 2]
void pack_int4(const std::int8_t* q, std::int64_t n, bool is_signed,
               std::uint8_t* out);

/// Inverse of pack_int4 (sign-extends when is_signed).
/// @param packed  uint8 [(n + 1) / 2]
/// @param out     int8 [n]
void unpack_int4(const std::uint8_t* packed, std::int64_t n, bool is_signed,
                 std::int8_t* out);

/// Plain scalar oracles of the kernels above (std::nearbyint, one element
/// at a time, index arithmetic spelled out). Used by the tests.
void ref_min_max(const float* x, const Layout& layout, float* lo, float* hi);
void ref_fake_quantize(const float* x, float* y, const Layout& layout,
                       const float* scale, const std::int32_t* zero_point,
                       const Scheme& scheme);
void ref_quantize_i32(const float* x, std::int32_t* q, const Layout& layout,
                      const float* scale, const std::int32_t* zero_point,
                      const Scheme& scheme);

}  // namespace lpcv::quantize
