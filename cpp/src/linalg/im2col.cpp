// im2col with ONNX Conv semantics; see im2col.hpp for the index mapping.
#include "lpcv/linalg/im2col.hpp"

#include <algorithm>

#include "lpcv/common/errors.hpp"
#include "lpcv/common/parallel.hpp"

namespace lpcv::linalg {

std::int64_t ConvGeometry::out_h() const {
  return (height + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h + 1;
}
std::int64_t ConvGeometry::out_w() const {
  return (width + pad_left + pad_right - dilation_w * (kernel_w - 1) - 1) / stride_w + 1;
}

void ConvGeometry::validate() const {
  if (batch < 0 || channels < 1 || height < 1 || width < 1)
    throw ShapeError(cat("im2col: input extents must be positive (batch >= 0), got (", batch,
                         ", ", channels, ", ", height, ", ", width, ")"));
  if (kernel_h < 1 || kernel_w < 1)
    throw InvalidArgument(cat("kernel_shape must be positive, got (", kernel_h, ", ",
                              kernel_w, ")"));
  if (stride_h < 1 || stride_w < 1)
    throw InvalidArgument(cat("strides must be positive, got (", stride_h, ", ", stride_w, ")"));
  if (dilation_h < 1 || dilation_w < 1)
    throw InvalidArgument(cat("dilations must be positive, got (", dilation_h, ", ",
                              dilation_w, ")"));
  if (pad_top < 0 || pad_left < 0 || pad_bottom < 0 || pad_right < 0)
    throw InvalidArgument(cat("pads must be non-negative, got (", pad_top, ", ", pad_left, ", ",
                              pad_bottom, ", ", pad_right, ")"));
  if (group < 1 || channels % group != 0)
    throw InvalidArgument(cat("group must be >= 1 and divide the ", channels,
                              " input channels, got ", group));
  if (height + pad_top + pad_bottom < dilation_h * (kernel_h - 1) + 1 ||
      width + pad_left + pad_right < dilation_w * (kernel_w - 1) + 1)
    throw ShapeError(cat("im2col: the dilated kernel (", dilation_h * (kernel_h - 1) + 1, ", ",
                         dilation_w * (kernel_w - 1) + 1, ") is larger than the padded input (",
                         height + pad_top + pad_bottom, ", ", width + pad_left + pad_right,
                         ")"));
}

namespace {

inline void fill_row(const float* x, const ConvGeometry& g, std::int64_t grp, std::int64_t r,
                     std::int64_t OH, std::int64_t OW, float* out) {
  const std::int64_t n = r / (OH * OW), rem = r % (OH * OW);
  const std::int64_t oh = rem / OW, ow = rem % OW;
  const std::int64_t cg = g.channels / g.group;
  const std::int64_t h0 = oh * g.stride_h - g.pad_top, w0 = ow * g.stride_w - g.pad_left;
  const std::int64_t KH = g.kernel_h, KW = g.kernel_w;
  for (std::int64_t ci = 0; ci < cg; ++ci) {
    const float* plane = x + ((n * g.channels + grp * cg + ci) * g.height) * g.width;
    for (std::int64_t i = 0; i < KH; ++i) {
      const std::int64_t h = h0 + i * g.dilation_h;
      float* o = out + (ci * KH + i) * KW;
      if (h < 0 || h >= g.height) {
        std::fill(o, o + KW, 0.0f);
        continue;
      }
      const float* rowp = plane + h * g.width;
      for (std::int64_t j = 0; j < KW; ++j) {
        const std::int64_t w = w0 + j * g.dilation_w;
        o[j] = (w >= 0 && w < g.width) ? rowp[w] : 0.0f;
      }
    }
  }
}

constexpr std::int64_t kRowsPerTask = 256;

}  // namespace

void im2col_range(const float* x, const ConvGeometry& g, std::int64_t grp,
                  std::int64_t row_begin, std::int64_t n_rows, float* out) {
  const std::int64_t OH = g.out_h(), OW = g.out_w(), K = g.cols();
  for (std::int64_t r = 0; r < n_rows; ++r) fill_row(x, g, grp, row_begin + r, OH, OW, out + r * K);
}

void im2col(const float* x, const ConvGeometry& g, float* out) {
  g.validate();
  const std::int64_t R = g.rows(), K = g.cols(), G = g.group;
  const std::int64_t tasks_per_group = (R + kRowsPerTask - 1) / kRowsPerTask;
  parallel_for(G * tasks_per_group, [&](std::int64_t t) {
    const std::int64_t grp = t / tasks_per_group, r0 = (t % tasks_per_group) * kRowsPerTask;
    const std::int64_t nr = std::min(kRowsPerTask, R - r0);
    im2col_range(x, g, grp, r0, nr, out + (grp * R + r0) * K);
  }, 4);
}

void im2col_rows(const float* x, const ConvGeometry& g, const std::int64_t* rows,
                 std::int64_t n_rows, float* out) {
  g.validate();
  const std::int64_t R = g.rows(), K = g.cols(), G = g.group;
  for (std::int64_t i = 0; i < n_rows; ++i)
    if (rows[i] < 0 || rows[i] >= R)
      throw InvalidArgument(cat("row index ", rows[i], " at position ", i, " is outside [0, ",
                                R, ")"));
  const std::int64_t OH = g.out_h(), OW = g.out_w();
  const std::int64_t tasks_per_group = (n_rows + kRowsPerTask - 1) / kRowsPerTask;
  parallel_for(G * tasks_per_group, [&](std::int64_t t) {
    const std::int64_t grp = t / tasks_per_group, i0 = (t % tasks_per_group) * kRowsPerTask;
    const std::int64_t i1 = std::min(n_rows, i0 + kRowsPerTask);
    for (std::int64_t i = i0; i < i1; ++i)
      fill_row(x, g, grp, rows[i], OH, OW, out + (grp * n_rows + i) * K);
  }, 4);
}

}  // namespace lpcv::linalg
