"""The cost model: operations, bytes, arithmetic intensity, roofline latency,
energy and peak memory of every layer, on a device, checked against oneDNN.

Cost is not parameter count. A depthwise convolution has few parameters and
few operations but moves as many bytes as it computes, so it is bound by
memory: pruning it saves almost no time, quantizing it saves bytes. Every row
of a :class:`CostReport` says which bound applies and what would help.

Model of a layer (``cpp/src/cost/roofline.cpp``):

* operations = 2·MACs + other operations (compares, adds, activations: one
  per element, about 40 for those built on exp, sigmoid, tanh and swish:
  20 vector instructions and a division as slow as 20 more);
  MACs and FLOPs are both reported, FLOPs = 2·MACs;
* bytes = weights at their stored format + activations read + written;
  arithmetic intensity = operations / bytes;
* cache model: an input written by an earlier layer is read from cache
  when it, plus everything the layers since wrote or streamed (outputs,
  weights), fits in half the cache (LRU reuse distance; a free reshape is
  its source's bytes, written when its source was); weights come from DRAM unless all the
  model's weights fit in half the cache; an output larger than half the cache
  goes to DRAM; when weights and input together exceed the cache, the smaller
  of the two is re-read once per extra cache-sized tile; a convolution with
  one output position per image (squeeze-excite, classifier convolutions)
  streams its weights once per image, the re-reads from the cache when they
  fit in half of it and from DRAM when they do not; a device with a shared
  cache level beyond that cache (``Device.shared_cache_bytes``, an L3)
  applies the same rules again at the shared level's capacity (but keeps
  the model's weights when they fit in the whole level), and the
  bytes that miss the near cache but not the shared level come from the
  shared level instead of DRAM, and so do a copy's (concat, split,
  transpose) cached inputs when each core takes whole images (copies deal
  their elements out to the cores unlike their producers); an element-wise
  layer that overwrites its cached input (the runtime runs them in place
  when the input has no later reader) moves no bytes for its writes;
* regimes: the op classes, with 1×1 (pointwise) convolutions apart from k×k
  ones, concatenations apart from other data movement and, among them,
  those with inputs in different layouts (oneDNN's reference kernel),
  global poolings apart from windowed ones, convolutions with one output
  position per image apart from other 1×1 ones, and matrix products on
  weights that stay in the near cache and that split their output columns
  across cores (more than one 64-column block) apart from other products
  (``REGIMES``);
* compute time = (2·MACs + 2·other operations) / (peak(precision) · compute
  efficiency of the regime): the peak counts a fused multiply-add as two
  operations, and any other vector instruction takes its issue slot for one;
  a depthwise convolution's fused element-wise operations (bias,
  activation) take ``POST_OP_REGIME``'s (``conv1x1``) efficiency;
  with a depthwise convolution's MACs counted on real input only: its kernels
  skip the taps that fall on padding, a large share on small maps (dense
  kernels run every tap), and on the device's
  padded vectors: kernels spread output channels (every channel of a depthwise
  convolution, the output features of a matrix product) over
  ``Device.vector_lanes`` lanes and pad the last vector, so 6 channels cost 16
  on AVX-512 (``lane_use``; the MACs column keeps the conventional count),
  and a convolution with one output position per image, whose output
  vectors are its only independent accumulator chains, multiply-adds at
  chains / ``Device.fma_chains`` of the peak when it has fewer
  (``chain_use``);
  memory time = (DRAM bytes / DRAM bandwidth + shared-level bytes /
  shared-level bandwidth) / memory efficiency of the regime + cached bytes /
  cache bandwidth (the efficiency is the share of a far level's bandwidth a
  regime's kernels stream at; the cache bandwidth is measured directly),
  except weights that stay in the near cache from run to run, a read-only
  stream at ``Device.cache_read_bandwidth`` when the device has one;
  latency = max(compute,
  memory) + overlap · min(compute, memory) (the part of the shorter term real
  kernels do not hide, per regime; 0 is the ideal roofline) + the regime's
  fixed per-primitive cost + predicted layout conversions (the runtime's
  convolutions keep activations channels-last; a convolution whose input or
  residual operand comes in another layout, or a reshape of a non-plain
  tensor, pays the reorder's fixed cost + bytes read and written / reorder
  bandwidth, its bytes beyond the near cache at the slower
  ``Device.reorder_far_bandwidth``; a first convolution on a plain input of
  few channels writes a blocked layout that pads channels to a multiple of
  ``Device.vector_lanes``, and it, the poolings and element-wise ops that
  keep that layout and the conversion out of it move the padded bytes) +
  the regime's fixed cost once more per extra primitive the runtime runs
  the layer as (a split: one copy per output) + input bytes ·
  the regime's cross-core cost when the batch is
  smaller than the device's threads (each primitive then splits single images
  across cores its own way and reads much of its input from another core's
  cache) + ``Device.image_pass_cost`` per image after the first of a
  convolution with one output position per image (one small matrix-vector
  product per image, each with its set-up) + ``Device.split_row_cost`` per
  output row, channel vector and image of a depthwise convolution split
  across cores (its pieces' set-up); the whole model adds the device's
  per-inference overhead and, per layer, a gap that grows with the layer's
  time as a power (``Device.layer_gap`` · (t / 10 µs) ** ``layer_gap_exponent``:
  what a whole run spends between and around layers that timing each alone
  does not show, and the slow repeats a layer's median leaves out);
* :meth:`Device.from_host` measures peaks and bandwidths with oneDNN
  micro-benchmarks (the near cache's copy bandwidth from the slope between two
  copies, so that it holds no fixed cost, and its read bandwidth from the
  slope between two matrix-vector products on cached matrices), and the
  shared level's bandwidth and the largest copy it still serves at least
  halfway from DRAM's speed to its own (fastest repeats; peaks and cache
  bandwidths the best of five measurements spread over the
  calibration; DRAM bandwidth, shared with other tenants, and fixed costs
  their median) and fits the reorder cost (fixed cost, near and far
  bandwidths) on measured conversions, then each regime's efficiencies,
  overlap, fixed cost (at most the time of the regime's
  fastest layer), cross-core cost, per-image cost and the chains the cores
  need on the measured layers of
  networks that ``bench/cost_fidelity.py`` does not validate on, each layer
  timed by its median over rounds that each time every layer once and then
  the whole run, as :func:`validate` measures (a run takes each layer's
  typical time, not its fastest), and its median over five passes spread
  over two to three minutes; last, the gap and its exponent, so that the
  measured steps of those networks add up to their measured whole runs
  (median over the same passes);
* energy = MACs executed (padding taps skipped, padded lanes counted) ·
  energy per MAC (precision) + other operations · half that
  + DRAM bytes (read and written) · DRAM energy/byte + cached bytes · cache
  energy/byte + shared-level bytes · shared-level energy/byte.

Examples
--------
>>> import lpcv
>>> rep = lpcv.cost.profile(lpcv.zoo.resnet18(), device="rpi4")
>>> round(rep.total.macs / 1e9, 2)
1.81
>>> rep.to_pandas()[["layer", "bound", "latency_ms"]].shape[1]
3
"""
from __future__ import annotations

from .device import HOROWITZ_45NM, OP_CLASSES, PRECISIONS, REGIMES, Device
from .report import CostReport, ModelCost, profile
from .storage import WeightFormat, storage_bytes
from .validate import ValidationReport, kendall_tau, validate

__all__ = ["profile", "validate", "Device", "CostReport", "ModelCost", "ValidationReport",
           "WeightFormat", "storage_bytes", "kendall_tau", "PRECISIONS", "OP_CLASSES", "REGIMES",
           "HOROWITZ_45NM"]
