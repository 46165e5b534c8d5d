#pragma once
/// @file roofline.hpp
/// Roofline latency, DRAM traffic and energy of layers on a device, and peak
/// activation memory from tensor lifetimes. Counting (MACs, bytes) happens in
/// the graph layer; this file turns counts into time and energy.
#include <array>
#include <cstdint>
#include <vector>

namespace lpcv::cost {

/// Arithmetic precisions with separate peaks and energies.
enum class Precision : int { fp32 = 0, fp16, bf16, int8, int4, binary, count };
constexpr int kPrecisions = static_cast<int>(Precision::count);

/// Op classes with separately measured efficiency (fraction of peak compute
/// and of bandwidth actually reached by real kernels).
enum class OpClass : int {
  conv = 0,    ///< dense convolution
  depthwise,   ///< depthwise / grouped convolution
  gemm,        ///< Gemm / MatMul / 1x1 convolution at batch 1
  pool,
  eltwise,     ///< activations, binary element-wise, normalization
  data,        ///< reshape, transpose, concat, pad, copies
  count
};
constexpr int kOpClasses = static_cast<int>(OpClass::count);

/// A device as the roofline sees it (all figures SI: FLOP/s, B/s, J).
struct DeviceSpec {
  std::array<double, kPrecisions> peak_flops{};     ///< 0: not supported
  std::array<double, kPrecisions> energy_per_mac{}; ///< J per multiply-add
  double cache_bytes = 0;        ///< capacity of the cache next to the cores
  double cache_bandwidth = 0;    ///< B/s between cache and cores
  /// B/s at which the cores only read from that cache (weights kept there
  /// from run to run; no writes share it); 0: cache_bandwidth.
  double cache_read_bandwidth = 0;
  /// A second, larger cache level between that cache and DRAM (a shared
  /// L3); 0 (or no more than cache_bytes): none.
  double shared_cache_bytes = 0;
  double shared_cache_bandwidth = 0;  ///< B/s from it; > 0 when it exists
  double dram_bandwidth = 0;     ///< B/s, reading
  /// DRAM time of a written byte relative to a read one: write-allocate
  /// caches read a line before overwriting it, then write it back.
  double dram_write_cost = 1;
  double cache_energy_per_byte = 0;  ///< J/B
  double shared_cache_energy_per_byte = 0;  ///< J/B
  double dram_energy_per_byte = 0;   ///< J/B
  double overhead = 0;           ///< s per primitive
  std::array<double, kOpClasses> compute_efficiency{};  ///< (0, 1]
  std::array<double, kOpClasses> memory_efficiency{};   ///< (0, 1]
};

/// What one layer does, counted by the graph layer.
struct LayerCounts {
  OpClass op_class = OpClass::conv;
  Precision precision = Precision::fp32;
  double macs = 0;          ///< multiply-accumulates
  double other_ops = 0;     ///< non-MAC operations (compares, adds, ...)
  double weight_bytes = 0;  ///< at the stored precision, incl. metadata
  double input_bytes = 0;   ///< activations read
  double output_bytes = 0;  ///< activations written
  bool input_in_cache = false;   ///< producer's output still cached
  bool weights_in_cache = false; ///< all weights of the model fit in cache
  bool input_in_shared_cache = false;   ///< the same, for the shared level
  bool weights_in_shared_cache = false; ///< the same, for the shared level
  /// Times the layer streams its weights (a convolution with one output
  /// position per image reads them once per image); re-reads come from the
  /// cache when the weights fit in half of it, from DRAM otherwise.
  double weight_reads = 1;
};

/// The roofline verdict for one layer.
struct LayerCost {
  double flops = 0;         ///< 2·MACs + other ops
  double bytes = 0;         ///< all bytes moved (weights + activations)
  double dram_bytes = 0;    ///< of which from/to DRAM (cache model)
  double shared_cache_bytes = 0;  ///< of which from/to the shared cache level
  double intensity = 0;     ///< FLOPs per byte moved
  double compute_time = 0;  ///< s
  /// s: far_time + cached bytes at the (near) cache bandwidth
  double memory_time = 0;
  /// s: of which traffic beyond the near cache: DRAM bytes at the DRAM
  /// bandwidth and shared-level bytes at its bandwidth, both × efficiency
  double far_time = 0;
  double dram_time = 0;     ///< s: of which DRAM traffic, at the DRAM bandwidth × efficiency
  double latency = 0;       ///< max(compute, memory) + overhead, s
  double compute_energy = 0;  ///< J
  double memory_energy = 0;   ///< J
  bool memory_bound = false;
};

/// Validates @p device (positive bandwidths, efficiencies in (0, 1], ...).
void check_device(const DeviceSpec& device);

/// Prices every layer. Throws InvalidArgument for negative counts or a
/// precision the device has no peak for.
std::vector<LayerCost> estimate(const std::vector<LayerCounts>& layers,
                                const DeviceSpec& device);

/// Largest sum of sizes of tensors alive at once. Tensor i is alive from
/// step birth[i] to step death[i] inclusive (execution order).
double peak_live_bytes(const std::vector<double>& sizes,
                       const std::vector<std::int64_t>& birth,
                       const std::vector<std::int64_t>& death);

}  // namespace lpcv::cost
