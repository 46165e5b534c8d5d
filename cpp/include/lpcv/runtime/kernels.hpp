#pragma once
/// @file kernels.hpp
/// Element-wise and data-movement kernels the runtime needs and oneDNN lacks.
/// All work on dense row-major float32 tensors.
#include <cstdint>
#include <vector>

namespace lpcv::runtime {

/// Binary operations of the generic broadcasting kernel.
enum class BinaryOp { add, sub, mul, div };

/// y = a OP b with NumPy/ONNX multidirectional broadcasting.
/// @param a,a_shape   first operand and its shape (rank <= out rank)
/// @param b,b_shape   second operand and its shape
/// @param y,y_shape   output and its (broadcast) shape
void broadcast_binary(BinaryOp op, const float* a,
                      const std::vector<std::int64_t>& a_shape, const float* b,
                      const std::vector<std::int64_t>& b_shape, float* y,
                      const std::vector<std::int64_t>& y_shape);

/// Padding modes of ONNX Pad.
enum class PadMode { constant, reflect, edge, wrap };

/// ONNX Pad. @p pads holds begin pads for every axis, then end pads; they may
/// be negative (cropping).
/// @param x,x_shape  input (dense float32)
/// @param y          output of the padded shape
void pad(const float* x, const std::vector<std::int64_t>& x_shape, float* y,
         const std::vector<std::int64_t>& pads, PadMode mode, float value);

}  // namespace lpcv::runtime
