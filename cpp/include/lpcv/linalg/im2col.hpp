#pragma once
/// @file im2col.hpp
/// Rows of a 2-D convolution's input patches (im2col) with ONNX Conv
/// semantics, grouped so that a grouped or depthwise convolution is G
/// independent matrix products:
///
///   out[g, r, c],  r = (n * OH + oh) * OW + ow,
///                  c = (ci * KH + i) * KW + j,   ci in [0, Cin/G)
///   = x[n, g * Cin/G + ci, oh*SH - PT + i*DH, ow*SW - PL + j*DW]   (0 outside)
///
/// so that with W (Cout, Cin/G, KH, KW) reshaped to (G, Cout/G, K),
/// W_g @ out_g^T is the convolution output of group g (channels
/// g*Cout/G ... , positions in row order).
#include <cstdint>

namespace lpcv::linalg {

/// Geometry of an NCHW 2-D convolution input (a 1-D convolution is H = 1,
/// KH = 1).
struct ConvGeometry {
  std::int64_t batch = 1, channels = 1, height = 1, width = 1;
  std::int64_t kernel_h = 1, kernel_w = 1;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  std::int64_t dilation_h = 1, dilation_w = 1;
  std::int64_t group = 1;

  std::int64_t out_h() const;
  std::int64_t out_w() const;
  /// Rows per group: batch * out_h * out_w.
  std::int64_t rows() const { return batch * out_h() * out_w(); }
  /// Columns: channels / group * kernel_h * kernel_w.
  std::int64_t cols() const { return channels / group * kernel_h * kernel_w; }
  /// Throws InvalidArgument / ShapeError naming the offending setting
  /// (non-positive extents, strides, dilations, negative pads, channels not
  /// divisible by group, empty output).
  void validate() const;
};

/// Full im2col. @param x float32 [batch, channels, height, width]
/// @param out float32 [group, rows(), cols()]
void im2col(const float* x, const ConvGeometry& g, float* out);

/// im2col of selected rows only. @param rows int64 [n_rows], each in
/// [0, geometry.rows()) (checked); @param out float32 [group, n_rows, cols()]
void im2col_rows(const float* x, const ConvGeometry& g, const std::int64_t* rows,
                 std::int64_t n_rows, float* out);

/// Rows [row_begin, row_begin + n_rows) of group `grp` into out
/// (n_rows x cols(), contiguous). Serial; no checks (internal building
/// block of the streaming Hessian).
void im2col_range(const float* x, const ConvGeometry& g, std::int64_t grp,
                  std::int64_t row_begin, std::int64_t n_rows, float* out);

}  // namespace lpcv::linalg
