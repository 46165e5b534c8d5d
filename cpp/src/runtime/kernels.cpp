#include "lpcv/runtime/kernels.hpp"

#include <algorithm>

#include "lpcv/common/errors.hpp"
#include "lpcv/common/parallel.hpp"

namespace lpcv::runtime {
namespace {

using Shape = std::vector<std::int64_t>;

std::int64_t numel(const Shape& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

// Strides of `shape` aligned to the right of an output of rank `rank`, with 0
// for broadcast axes.
Shape broadcast_strides(const Shape& shape, std::size_t rank) {
  Shape strides(rank, 0);
  std::int64_t s = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const std::size_t src = shape.size() - 1 - i;
    const std::size_t dst = rank - 1 - i;
    strides[dst] = shape[src] == 1 ? 0 : s;
    s *= shape[src];
  }
  return strides;
}

template <typename F>
void broadcast_apply(F f, const float* a, const Shape& as, const float* b,
                     const Shape& bs, float* y, const Shape& ys) {
  const std::size_t rank = ys.size();
  if (rank == 0) {
    y[0] = f(a[0], b[0]);
    return;
  }
  const std::int64_t inner = ys.back();
  const std::int64_t rows = inner ? numel(ys) / inner : 0;
  const Shape sa = broadcast_strides(as, rank), sb = broadcast_strides(bs, rank);
  const std::int64_t ia = sa.back(), ib = sb.back();
  parallel_for(rows, [&](std::int64_t r) {
    // Decompose the row index into outer coordinates.
    std::int64_t rem = r, oa = 0, ob = 0;
    for (std::size_t k = rank - 1; k-- > 0;) {
      const std::int64_t c = rem % ys[k];
      rem /= ys[k];
      oa += c * sa[k];
      ob += c * sb[k];
    }
    float* yr = y + r * inner;
    for (std::int64_t i = 0; i < inner; ++i) yr[i] = f(a[oa + i * ia], b[ob + i * ib]);
  }, 4);
}

// Source coordinate of output coordinate `o` along an axis of extent `n`
// with begin pad `p`; -1 means "use the constant".
std::int64_t pad_source(std::int64_t o, std::int64_t p, std::int64_t n,
                        PadMode mode) {
  std::int64_t i = o - p;
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case PadMode::constant:
      return -1;
    case PadMode::edge:
      return std::clamp<std::int64_t>(i, 0, n - 1);
    case PadMode::wrap:
      return ((i % n) + n) % n;
    case PadMode::reflect: {
      if (n == 1) return 0;
      const std::int64_t period = 2 * (n - 1);
      i = ((i % period) + period) % period;
      return i < n ? i : period - i;
    }
  }
  return -1;
}

}  // namespace

void broadcast_binary(BinaryOp op, const float* a, const Shape& a_shape,
                      const float* b, const Shape& b_shape, float* y,
                      const Shape& y_shape) {
  if (a_shape.size() > y_shape.size() || b_shape.size() > y_shape.size())
    throw ShapeError("broadcast_binary: operand rank exceeds output rank");
  switch (op) {
    case BinaryOp::add:
      return broadcast_apply([](float u, float v) { return u + v; }, a, a_shape,
                             b, b_shape, y, y_shape);
    case BinaryOp::sub:
      return broadcast_apply([](float u, float v) { return u - v; }, a, a_shape,
                             b, b_shape, y, y_shape);
    case BinaryOp::mul:
      return broadcast_apply([](float u, float v) { return u * v; }, a, a_shape,
                             b, b_shape, y, y_shape);
    case BinaryOp::div:
      return broadcast_apply([](float u, float v) { return u / v; }, a, a_shape,
                             b, b_shape, y, y_shape);
  }
}

void pad(const float* x, const Shape& xs, float* y, const Shape& pads,
         PadMode mode, float value) {
  const std::size_t rank = xs.size();
  if (pads.size() != 2 * rank)
    throw ShapeError(cat("pad: expected ", 2 * rank, " pads, got ", pads.size()));
  Shape ys(rank);
  for (std::size_t k = 0; k < rank; ++k) {
    ys[k] = xs[k] + pads[k] + pads[k + rank];
    if (ys[k] < 0) throw ShapeError("pad: negative output extent");
    if (mode != PadMode::constant && xs[k] == 0 && ys[k] > 0)
      throw InvalidArgument("pad: non-constant padding of an empty axis");
  }
  if (rank == 0) {
    y[0] = x[0];
    return;
  }
  const std::int64_t inner = ys.back();
  const std::int64_t rows = inner ? numel(ys) / inner : 0;
  Shape xstr(rank, 1);
  for (std::size_t k = rank - 1; k-- > 0;) xstr[k] = xstr[k + 1] * xs[k + 1];
  parallel_for(rows, [&](std::int64_t r) {
    std::int64_t rem = r, off = 0;
    bool outside = false;
    for (std::size_t k = rank - 1; k-- > 0;) {
      const std::int64_t c = rem % ys[k];
      rem /= ys[k];
      const std::int64_t s = pad_source(c, pads[k], xs[k], mode);
      if (s < 0) outside = true;
      else off += s * xstr[k];
    }
    float* yr = y + r * inner;
    if (outside) {
      std::fill(yr, yr + inner, value);
      return;
    }
    const std::int64_t n = xs[rank - 1], p = pads[rank - 1];
    for (std::int64_t i = 0; i < inner; ++i) {
      const std::int64_t s = pad_source(i, p, n, mode);
      yr[i] = s < 0 ? value : x[off + s];
    }
  }, 4);
}

}  // namespace lpcv::runtime
