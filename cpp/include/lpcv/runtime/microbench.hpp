#pragma once
/// @file microbench.hpp
/// oneDNN micro-benchmarks that measure a machine for the cost model
/// (lpcv.cost.Device.from_host). Each returns the best time over repeats.
#include <cstdint>

#include "lpcv/runtime/plan.hpp"

namespace lpcv::runtime {

/// Seconds per M×K · K×N matmul: DType::f32, or DType::s8 (u8·s8 → s32, the
/// int8 path of quantized kernels).
double time_matmul(std::int64_t m, std::int64_t n, std::int64_t k, DType dtype,
                   int repeats, int threads);

/// Seconds to copy @p bytes between two buffers (oneDNN reorder): streaming
/// read + write bandwidth is 2·bytes / time.
double time_copy(std::int64_t bytes, int repeats, int threads);

/// Seconds per execution of a minimal primitive (ReLU of 16 floats): the
/// fixed cost every layer pays.
double time_tiny_primitive(int repeats, int threads);

}  // namespace lpcv::runtime
