#include "lpcv/cost/roofline.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "lpcv/common/errors.hpp"

namespace lpcv::cost {

namespace {
bool positive(double v) { return std::isfinite(v) && v > 0; }

bool has_shared_level(const DeviceSpec& d) { return d.shared_cache_bytes > d.cache_bytes; }

/// Bytes of one layer that miss a cache of @p capacity bytes.
struct Misses {
  double compulsory = 0;   ///< weights and input not held by the cache
  double read = 0;         ///< all reads from beyond it (compulsory + re-reads)
  double written = 0;      ///< output written back beyond it
  double reread_near = 0;  ///< weight re-reads the cache serves
};

Misses misses(const LayerCounts& l, double capacity, bool input_held, bool weights_held) {
  Misses m;
  if (!weights_held) m.compulsory += l.weight_bytes;
  if (!input_held) m.compulsory += l.input_bytes;
  m.read = m.compulsory;
  if (l.output_bytes > capacity / 2) m.written = l.output_bytes;
  // Weights streamed once per image come again from the cache when they
  // fit in half of it, and again from beyond it when they do not: the
  // kernel has no spatial work per image to block the re-reads over.
  const bool streamed = l.weight_reads > 1;
  const double rereads = (l.weight_reads - 1) * l.weight_bytes;
  if (streamed && l.weight_bytes <= capacity / 2) m.reread_near = rereads;
  if (streamed && l.weight_bytes > capacity / 2) m.read += rereads;
  // One operand is re-read per extra cache-sized tile when weights and
  // input together do not fit.
  const double ws = l.weight_bytes + l.input_bytes;
  if (capacity > 0 && ws > capacity && l.macs > 0 && !streamed)
    m.read += (std::ceil(ws / capacity) - 1) * std::min(l.weight_bytes, l.input_bytes);
  return m;
}
}  // namespace

void check_device(const DeviceSpec& d) {
  if (!positive(d.peak_flops[int(Precision::fp32)]))
    throw InvalidArgument(cat("device: fp32 peak must be positive, got ",
                              d.peak_flops[int(Precision::fp32)]));
  for (double p : d.peak_flops)
    if (!std::isfinite(p) || p < 0) throw InvalidArgument(cat("device: peak ", p, " is invalid"));
  for (double e : d.energy_per_mac)
    if (!std::isfinite(e) || e < 0) throw InvalidArgument(cat("device: MAC energy ", e, " is invalid"));
  if (!std::isfinite(d.cache_read_bandwidth) || d.cache_read_bandwidth < 0)
    throw InvalidArgument(cat("device: cache read bandwidth must be >= 0, got ",
                              d.cache_read_bandwidth));
  if (!positive(d.dram_bandwidth) || !positive(d.cache_bandwidth))
    throw InvalidArgument(cat("device: bandwidths must be positive, got dram=", d.dram_bandwidth,
                              " cache=", d.cache_bandwidth));
  if (!std::isfinite(d.cache_bytes) || d.cache_bytes < 0)
    throw InvalidArgument(cat("device: cache capacity must be >= 0, got ", d.cache_bytes));
  if (!(d.dram_write_cost >= 1 && d.dram_write_cost <= 4))
    throw InvalidArgument(cat("device: DRAM write cost must be in [1, 4], got ", d.dram_write_cost));
  if (!std::isfinite(d.overhead) || d.overhead < 0)
    throw InvalidArgument(cat("device: overhead must be >= 0, got ", d.overhead));
  if (!std::isfinite(d.shared_cache_bytes) || d.shared_cache_bytes < 0)
    throw InvalidArgument(cat("device: shared cache capacity must be >= 0, got ",
                              d.shared_cache_bytes));
  if (has_shared_level(d) && !positive(d.shared_cache_bandwidth))
    throw InvalidArgument(cat("device: shared cache bandwidth must be positive, got ",
                              d.shared_cache_bandwidth));
  if (!(d.cache_energy_per_byte >= 0) || !(d.dram_energy_per_byte >= 0) ||
      !(d.shared_cache_energy_per_byte >= 0))
    throw InvalidArgument("device: energies per byte must be >= 0");
  for (int c = 0; c < kOpClasses; ++c) {
    const double ce = d.compute_efficiency[c], me = d.memory_efficiency[c];
    if (!(ce > 0 && ce <= 1) || !(me > 0 && me <= 1))
      throw InvalidArgument(cat("device: efficiencies must be in (0, 1], got ", ce, ", ", me));
  }
}

std::vector<LayerCost> estimate(const std::vector<LayerCounts>& layers, const DeviceSpec& d) {
  check_device(d);
  std::vector<LayerCost> out(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const LayerCounts& l = layers[i];
    for (double v : {l.macs, l.other_ops, l.weight_bytes, l.input_bytes, l.output_bytes})
      if (!std::isfinite(v) || v < 0)
        throw InvalidArgument(cat("layer ", i, ": counts must be finite and >= 0"));
    if (!std::isfinite(l.weight_reads) || l.weight_reads < 1)
      throw InvalidArgument(cat("layer ", i, ": weight_reads must be >= 1, got ", l.weight_reads));
    const int p = int(l.precision), c = int(l.op_class);
    if (p < 0 || p >= kPrecisions || c < 0 || c >= kOpClasses)
      throw InvalidArgument(cat("layer ", i, ": bad precision or op class"));
    // Precisions without native support run at the fp32 rate.
    const double peak = d.peak_flops[p] > 0 ? d.peak_flops[p] : d.peak_flops[int(Precision::fp32)];
    LayerCost& r = out[i];
    r.flops = 2 * l.macs + l.other_ops;
    r.bytes = l.weight_bytes + l.input_bytes + l.output_bytes;
    // Cache model (documented in python/lpcv/cost/__init__.py): what misses
    // the near cache is served by the shared level when it holds it, by
    // DRAM otherwise.
    const Misses near = misses(l, d.cache_bytes, l.input_in_cache, l.weights_in_cache);
    Misses far = near;
    if (has_shared_level(d))
      far = misses(l, d.shared_cache_bytes, l.input_in_cache || l.input_in_shared_cache,
                   l.weights_in_cache || l.weights_in_shared_cache);
    const double dram = far.read, written = far.written;
    // Compulsory bytes not moved beyond the near cache come from it.
    double cached = std::max(0.0, r.bytes - std::min(near.compulsory + near.written, r.bytes));
    cached += near.reread_near;
    const double shared = std::max(0.0, near.read + near.written - far.read - far.written);
    r.dram_bytes = dram + written;
    r.shared_cache_bytes = shared;
    r.intensity = r.bytes > 0 ? r.flops / r.bytes : INFINITY;
    // Peak FLOP/s counts a fused multiply-add as two operations per lane; any
    // other vector instruction (max, add, compare, one step of exp) takes the
    // same issue slot for one operation, so non-MAC operations take twice the
    // time per operation that MACs do.
    r.compute_time = (2 * l.macs + 2 * l.other_ops) / (peak * d.compute_efficiency[c]);
    // The efficiency is the share of a far level's bandwidth (DRAM or the
    // shared cache) a kernel streams at; bytes in the near cache move at its
    // bandwidth, measured directly.
    const double me = d.memory_efficiency[c];
    r.dram_time = (dram + d.dram_write_cost * written) / d.dram_bandwidth / me;
    r.far_time = r.dram_time + (shared > 0 ? shared / d.shared_cache_bandwidth / me : 0.0);
    // Weights the near cache keeps from run to run are a read-only stream:
    // they move at its read bandwidth when that is known.
    const double resident = l.weights_in_cache ? std::min(cached, l.weight_bytes) : 0.0;
    const double read_bw = d.cache_read_bandwidth > 0 ? d.cache_read_bandwidth : d.cache_bandwidth;
    r.memory_time = r.far_time + (cached - resident) / d.cache_bandwidth + resident / read_bw;
    r.memory_bound = r.memory_time > r.compute_time;
    r.latency = std::max(r.compute_time, r.memory_time) + d.overhead;
    r.compute_energy = l.macs * d.energy_per_mac[p] +
                       l.other_ops * d.energy_per_mac[p] * 0.5;  // an op ≈ half a MAC
    r.memory_energy = (dram + written) * d.dram_energy_per_byte +
                      cached * d.cache_energy_per_byte + shared * d.shared_cache_energy_per_byte;
  }
  return out;
}

double peak_live_bytes(const std::vector<double>& sizes, const std::vector<std::int64_t>& birth,
                       const std::vector<std::int64_t>& death) {
  if (sizes.size() != birth.size() || sizes.size() != death.size())
    throw ShapeError("peak_live_bytes: sizes, birth and death differ in length");
  std::map<std::int64_t, double> delta;  // step -> change in live bytes
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] < 0 || death[i] < birth[i])
      throw InvalidArgument(cat("peak_live_bytes: tensor ", i, " has a bad size or lifetime"));
    delta[birth[i]] += sizes[i];
    delta[death[i] + 1] -= sizes[i];
  }
  double live = 0, peak = 0;
  for (const auto& [step, d] : delta) {
    live += d;
    peak = std::max(peak, live);
  }
  return peak;
}

}  // namespace lpcv::cost
