"""Devices for the cost model: datasheet presets and a measured host.

A :class:`Device` gives the roofline its ceilings (peak FLOP/s per
precision, DRAM and cache bandwidth), the fixed cost of a primitive, energy
per operation and per byte, and per op-class efficiencies (the fraction of a
ceiling real kernels reach).

Energy defaults are Horowitz's 45 nm figures ("Computing's energy problem
(and what we can do about it)", ISSCC 2014): a MAC is one multiply plus one
add at the operand width; DRAM is 640 pJ per 32-bit read, an 8 KB SRAM 5 pJ
per 32-bit read. Figures Horowitz does not give are derived and say so.

Examples
--------
>>> from lpcv.cost import Device
>>> rpi = Device.preset("rpi4")
>>> round(rpi.ridge_point("fp32"), 2)   # FLOP per byte where compute and memory meet
3.75
>>> sorted(Device.presets())
['jetson-nano-cpu', 'jetson-nano-gpu', 'phone-big-core', 'rpi4', 'x86-avx512-core']
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ..exceptions import ValidationError

__all__ = ["Device", "PRECISIONS", "OP_CLASSES", "REGIMES", "HOROWITZ_45NM"]

#: Precisions the cost model distinguishes (order shared with lpcv::cost).
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int4", "binary")
#: Op classes with their own measured efficiency (order shared with lpcv::cost).
OP_CLASSES = ("conv", "depthwise", "gemm", "pool", "eltwise", "data")
#: Regimes the latency model prices separately: the op classes plus 1×1
#: (pointwise) convolutions, which stream activations where k×k ones reuse
#: them; concatenations, which gather channel slices of channels-last
#: tensors (a strided copy, several times slower per byte than a plain one),
#: and among them those whose inputs come in different layouts, for which
#: oneDNN has only its reference kernel (half the speed again); and global
#: poolings (one output position per image), a plain reduction, apart from
#: windowed ones; and convolutions with one output position per image
#: (squeeze-excite and classifier convolutions), a small matrix-vector
#: product per image; and matrix products whose weights stay in the near
#: cache from run to run (a small model's) and whose output columns are
#: split across cores: on a 2-vCPU Xeon VM, LeNet-300's batch-16 products
#: ran at twice the FLOP rate of those streaming their weights from beyond
#: that cache. A device without figures for a regime uses those of its
#: parent (``REGIME_PARENTS``; parents come before their children).
REGIMES = OP_CLASSES + ("conv1x1", "concat", "concat_mixed", "global_pool", "conv_per_image",
                        "gemm_resident")
#: The regime whose compute efficiency prices the element-wise operations
#: fused into the layers of ``POST_OPS_APART`` (see ``Device.compute_efficiency``).
POST_OP_REGIME = "conv1x1"
#: Regimes whose fused element-wise operations run at ``POST_OP_REGIME``'s
#: compute efficiency instead of their own.
POST_OPS_APART = frozenset({"depthwise"})
REGIME_PARENTS = MappingProxyType({"conv1x1": "conv", "concat": "data",
                                   "concat_mixed": "concat", "global_pool": "pool",
                                   "conv_per_image": "conv1x1", "gemm_resident": "gemm"})

_PJ = 1e-12
#: Layer time at which ``Device.layer_gap`` is given (seconds).
GAP_REFERENCE = 10e-6


def conversion_seconds(nbytes, overhead, near_bandwidth, far_bandwidth, cache_bytes):
    """Seconds of layout conversions that read and write ``nbytes`` in all:
    a fixed cost, the bytes within ``cache_bytes`` at ``near_bandwidth`` and
    the rest at ``far_bandwidth`` (arrays broadcast: the host fit prices a
    grid of figures at once)."""
    far = np.maximum(nbytes - cache_bytes, 0.0)
    return overhead + (nbytes - far) / near_bandwidth + far / far_bandwidth


#: Horowitz 2014, 45 nm, pJ. ``mac_*`` = multiply + add of that width.
HOROWITZ_45NM = MappingProxyType({
    "fp32_mult": 3.7, "fp32_add": 0.9,
    "fp16_mult": 1.1, "fp16_add": 0.4,
    "int32_mult": 3.1, "int32_add": 0.1,
    "int8_mult": 0.2, "int8_add": 0.03,
    "sram_8kb_read_32bit": 5.0,
    "sram_1mb_read_64bit": 100.0,
    "dram_read_32bit": 640.0,
})

#: Energy per MAC in joules. fp32/fp16: multiply + add of that width. bf16:
#: taken as fp16 (same multiplier width class; derived). int8: 8-bit
#: multiply + 32-bit accumulate. int4: the 8-bit multiply scaled
#: quadratically with width (÷4, derived) + 32-bit accumulate. binary: XNOR +
#: popcount, taken as one 8-bit add (derived).
DEFAULT_ENERGY_PER_MAC = MappingProxyType({
    "fp32": (3.7 + 0.9) * _PJ,
    "fp16": (1.1 + 0.4) * _PJ,
    "bf16": (1.1 + 0.4) * _PJ,
    "int8": (0.2 + 0.1) * _PJ,
    "int4": (0.05 + 0.1) * _PJ,
    "binary": 0.03 * _PJ,
})
DEFAULT_DRAM_ENERGY_PER_BYTE = 640.0 / 4 * _PJ
DEFAULT_CACHE_ENERGY_PER_BYTE = 5.0 / 4 * _PJ
#: A large (shared, megabytes) cache: Horowitz's 1 MB SRAM, 100 pJ per
#: 64-bit read.
DEFAULT_SHARED_CACHE_ENERGY_PER_BYTE = 100.0 / 8 * _PJ


def _with_parents(m: Optional[Mapping[str, float]]) -> Dict[str, float]:
    """``m`` with each regime it leaves out given its parent's figure."""
    out = dict(m or {})
    for regime, parent in REGIME_PARENTS.items():
        if regime not in out and parent in out:
            out[regime] = out[parent]
    return out


def _frozen(m: Optional[Mapping[str, float]], keys, what: str, default: float = 1.0,
            lo: float = 0.0, hi: float = float("inf"), lo_open: bool = False) -> Mapping[str, float]:
    m = dict(m or {})
    unknown = set(m) - set(keys)
    if unknown:
        raise ValidationError(f"{what}: unknown keys {sorted(unknown)}; expected some of {list(keys)}")
    out = {}
    for k in keys:
        v = float(m.get(k, default))
        if not (v == v) or v < lo or v > hi or (lo_open and v <= lo):
            raise ValidationError(f"{what}[{k!r}] must be in {'(' if lo_open else '['}{lo}, {hi}], "
                                  f"got {v}")
        out[k] = v
    return MappingProxyType(out)


@dataclass(frozen=True)
class Device:
    """Roofline, overhead and energy figures of a target device.

    Parameters
    ----------
    name : str
    peak_flops : mapping of precision to FLOP/s
        Peak arithmetic throughput (2 FLOPs per MAC). Precisions left out or
        0 run at the fp32 rate. ``fp32`` is required.
    dram_bandwidth : float
        Sustained DRAM bandwidth, bytes/s (reading).
    dram_write_cost : float
        DRAM time of a byte written relative to one read, in [1, 4]: caches
        that allocate on write read a line before overwriting it and write it
        back later, so streaming a write costs about two reads (2); kernels
        that write with streaming (non-temporal) stores pay 1. The presets
        and :meth:`from_host` use 1: on the measured layers, oneDNN's large
        outputs stream at the read rate.
    cache_bytes : float
        Capacity of the cache next to the cores (private L2s, or a small
        last-level cache) available to the model, bytes.
    cache_bandwidth : float
        Bandwidth between that cache and the cores, bytes/s, without fixed
        costs (the regimes price those apart; :meth:`from_host` measures it
        as the slope between two copies).
    cache_read_bandwidth : float, optional
        Bytes/s at which the cores only read from that cache; the weights of
        a model small enough to stay there from run to run (all of them in
        half of ``cache_bytes``) stream at it. Default ``cache_bandwidth``.
        (On a 2-vCPU Xeon VM oneDNN's matrix-vector products read their
        cached matrix at 2.5x the cache's copy bandwidth; LeNet-300's first
        layer was predicted 90 % too slow at the copy rate.)
    shared_cache_bytes : float
        Capacity of a second, larger cache level between that cache and
        DRAM (a shared L3) that the model can count on, bytes; 0 (the
        default) or no more than ``cache_bytes``: no such level. Bytes that
        miss ``cache_bytes`` but fit this level move at
        ``shared_cache_bandwidth`` instead of the DRAM bandwidth (same
        reuse-distance rules, at this capacity; the regime's memory
        efficiency applies to both: on a 2-vCPU Xeon VM, ShuffleNet's 13
        mixed-layout concatenations at batch 16 moved their 3-12 MB
        through its shared cache at 50-65 % of a copy's rate, and all were
        predicted 30-50 % too fast while only DRAM bytes were scaled).
    shared_cache_bandwidth : float, optional
        Bytes/s from that level; required when it exists.
    overhead : float
        Fixed seconds each primitive (layer) costs.
    class_overhead : mapping of regime to seconds, optional
        Fixed cost of a primitive per regime (see ``REGIMES``); regimes left
        out cost their parent's (``REGIME_PARENTS``), else ``overhead``.
    reorder_overhead : float
        Fixed seconds of a layout conversion (reorder) in front of a layer
        whose input is not in the layout its kernel wants.
    reorder_bandwidth : float, optional
        Bytes/s (read + written) of such a conversion; default the cache
        bandwidth.
    reorder_far_bandwidth : float, optional
        Bytes/s of a conversion's bytes beyond ``cache_bytes``; default
        ``reorder_bandwidth``. Large conversions spill the near cache: on a
        2-vCPU Xeon VM those of 1.5-6 MB ran at 36-55 GB/s, those of 11-51
        MB (the first convolution's output at batch 16) at 14-33 GB/s.
    energy_per_mac : mapping of precision to joules
    dram_energy_per_byte, cache_energy_per_byte, shared_cache_energy_per_byte : float
        Joules per byte moved to or from each memory level.
    compute_efficiency, memory_efficiency : mapping of regime to (0, 1]
        Fraction of the compute ceiling and of the far memory levels'
        bandwidths (DRAM and the shared cache level) real kernels reach
        (bytes in the near cache move at ``cache_bandwidth``, measured
        directly), per regime (see
        ``REGIMES``; a regime left out takes its parent's,
        ``REGIME_PARENTS``: ``conv1x1`` that of ``conv``). The element-wise
        operations fused into a depthwise convolution (bias, activation;
        regimes ``POST_OPS_APART``) run at the compute efficiency of
        ``POST_OP_REGIME`` (``conv1x1``): the same vector code follows
        both kernels, and the depthwise kernel's low efficiency comes from
        its own loop. (Priced at the depthwise efficiency on a 2-vCPU Xeon
        VM, EfficientNet's swish-fused depthwise convolutions came out 15-21 %
        too slow and the ReLU ones of other networks too fast at batch 16;
        with every regime's post-ops priced so, ``conv1x1``'s own fit moved
        when ``conv`` was the reference, and the other regimes gained
        nothing.)
    overlap : mapping of regime to [0, 1], optional
        How much of the shorter of a layer's compute and memory times is
        *not* hidden behind the longer: latency = max(c, m) + overlap·min(c, m).
        0 (the default) is the ideal roofline; kernels that alternate between
        loading a tile and computing on it sit in between.
    run_overhead : float
        Fixed seconds per inference outside the layers (dispatch, binding the
        inputs, copying the outputs); added to the whole-model latency.
    layer_gap : float
        Seconds a whole inference spends beyond the sum of its layers'
        typical times, per layer of ``GAP_REFERENCE`` seconds (10 µs) timed
        alone; a layer of time t adds ``layer_gap · (t / GAP_REFERENCE) **
        layer_gap_exponent`` to the whole-model latency (per-layer rows
        leave it out). Default 0. What a per-layer timer does not see:
        stepping from one primitive to the next, and each layer's repeats
        being skewed towards slow ones, of which a whole run pays the mean,
        not the median. :meth:`from_host` fits both figures on whole runs of
        its calibration networks (on a 2-vCPU Xeon VM the excess was 2-9 %
        of networks of many small layers at batch 1 and 1-3 % at batch 16;
        MobileNetV3-Small at batch 1 came out 11 % too fast without it).
    layer_gap_exponent : float
        How a layer's gap grows with its time, in [0, 1]: 0 is a fixed gap
        per layer, 1 a fixed share of its time. Default 0.
    image_pass_cost : float
        Fixed seconds of each image after the first in a convolution with
        one output position per image (regime ``conv_per_image``): the
        kernel runs one small matrix-vector product per image and pays its
        set-up each time. Default 0. :meth:`from_host` fits it (on the
        measured host, squeeze-excite convolutions at batch 16 took 6-15 µs
        where their bytes and operations alone gave 2-4 µs).
    split_row_cost : float
        Fixed seconds per output row, channel vector (``vector_lanes``
        channels) and image of a depthwise convolution whose batch is smaller
        than ``threads``: split across cores, single images are worked on in
        small pieces, each with its own set-up. Default 0. :meth:`from_host`
        fits it (on a 2-vCPU Xeon VM, 17 ns: at batch 1, depthwise
        convolutions of 384-1024 channels on 7×7 and 14×14 maps took 25-47 %
        longer than their bytes and operations gave, the same layers at
        batch 16 did not; refitted on three kept measurement sets, layers
        within ±20 % rose by 0.8-1.2 points, depthwise ones at batch 1 from
        49 % to 72 %).
    threads : int
        Cores one inference is spread over (1 for the single-core presets).
    cross_core_cost : mapping of regime to seconds per byte, optional
        Extra time per activation byte read by a layer whose batch is
        smaller than ``threads``: such a primitive splits single images
        across cores in its own way, so much of its input sits in another
        core's cache, written there by the previous primitive (on the
        measured host, 2 threads ran batch-1 squeeze-excite scales and
        poolings 2-4x *slower* than 1 thread). Default 0.
    vector_lanes : int
        fp32 lanes of one vector register (16 for AVX-512, 8 for AVX2, 4
        for NEON; 1, the default, prices no vectors). Kernels spread a
        layer's channels over the lanes (output channels of a convolution,
        every channel of a depthwise one, output features of a matrix
        product) and pad the last vector, so a 6-channel convolution runs
        as many multiply-adds as a 16-channel one on AVX-512.
    fma_chains : float
        Independent multiply-add chains one core needs to keep its vector
        units busy (a multiply-add's latency in cycles times the units that
        issue them). A convolution with one output position per image
        (regime ``conv_per_image``) accumulates each output vector in a
        chain through all its input channels, so with fewer output vectors
        than ``fma_chains`` it runs at that share of the compute peak; other
        layers have output positions to spare. Default 1 (no limit).
        :meth:`from_host` fits it on that regime's layers (on a 2-vCPU
        Xeon VM: 16 and 32 in two calibrations, more than the 8 of its
        multiply-add latency, 4 cycles, times its two units, so the figure
        also absorbs other costs of small per-image kernels; refitted on
        kept measurements it took that regime's layers within ±20 % from
        41 % to 67 % at batch 1 and from 44 % to 55 % at batch 16).
    description, source : str
        What the device is and where its figures come from.
    """

    name: str
    peak_flops: Mapping[str, float]
    dram_bandwidth: float
    cache_bytes: float
    cache_bandwidth: float
    overhead: float = 2e-6
    energy_per_mac: Mapping[str, float] = field(default_factory=lambda: DEFAULT_ENERGY_PER_MAC)
    dram_energy_per_byte: float = DEFAULT_DRAM_ENERGY_PER_BYTE
    cache_energy_per_byte: float = DEFAULT_CACHE_ENERGY_PER_BYTE
    compute_efficiency: Mapping[str, float] = field(default_factory=dict)
    memory_efficiency: Mapping[str, float] = field(default_factory=dict)
    description: str = ""
    source: str = ""
    class_overhead: Mapping[str, float] = field(default_factory=dict)
    reorder_overhead: float = 0.0
    reorder_bandwidth: Optional[float] = None
    reorder_far_bandwidth: Optional[float] = None
    overlap: Mapping[str, float] = field(default_factory=dict)
    run_overhead: float = 0.0
    layer_gap: float = 0.0
    layer_gap_exponent: float = 0.0
    image_pass_cost: float = 0.0
    split_row_cost: float = 0.0
    fma_chains: float = 1.0
    dram_write_cost: float = 1.0
    threads: int = 1
    cross_core_cost: Mapping[str, float] = field(default_factory=dict)
    vector_lanes: int = 1
    shared_cache_bytes: float = 0.0
    shared_cache_bandwidth: Optional[float] = None
    shared_cache_energy_per_byte: float = DEFAULT_SHARED_CACHE_ENERGY_PER_BYTE
    cache_read_bandwidth: Optional[float] = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError("Device.name must be a non-empty string")
        peaks = _frozen(self.peak_flops, PRECISIONS, "peak_flops", default=0.0)
        if peaks["fp32"] <= 0:
            raise ValidationError(f"peak_flops['fp32'] must be positive, got {peaks['fp32']}")
        object.__setattr__(self, "peak_flops", peaks)
        object.__setattr__(self, "energy_per_mac",
                           _frozen({**DEFAULT_ENERGY_PER_MAC, **dict(self.energy_per_mac)},
                                   PRECISIONS, "energy_per_mac", default=0.0))
        for f in ("compute_efficiency", "memory_efficiency"):
            eff = _with_parents(getattr(self, f))
            object.__setattr__(self, f, _frozen(eff, REGIMES, f, lo=0.0, hi=1.0, lo_open=True))
        object.__setattr__(self, "overlap", _frozen(_with_parents(self.overlap), REGIMES,
                                                    "overlap", default=0.0, lo=0.0, hi=1.0))
        object.__setattr__(self, "cross_core_cost", _frozen(
            _with_parents(self.cross_core_cost), REGIMES, "cross_core_cost", default=0.0,
            lo=0.0, hi=1e-6))
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValidationError(f"Device.threads must be a positive int, got {self.threads!r}")
        lanes = self.vector_lanes
        if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= 64:
            raise ValidationError(f"Device.vector_lanes must be an int in [1, 64], got {lanes!r}")
        for f in ("dram_bandwidth", "cache_bandwidth"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
                raise ValidationError(f"Device.{f} must be a positive finite number, got {v!r}")
        for f in ("reorder_bandwidth", "reorder_far_bandwidth", "shared_cache_bandwidth",
                  "cache_read_bandwidth"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, (int, float)) or not v > 0
                                  or v == float("inf")):
                raise ValidationError(f"Device.{f} must be a positive finite number or None, "
                                      f"got {v!r}")
        v = self.dram_write_cost
        if not isinstance(v, (int, float)) or not 1.0 <= v <= 4.0:
            raise ValidationError(f"Device.dram_write_cost must be in [1, 4], got {v!r}")
        v = self.layer_gap_exponent
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValidationError(f"Device.layer_gap_exponent must be a number in [0, 1], "
                                  f"got {v!r}")
        v = self.fma_chains
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1.0 <= v <= 64.0:
            raise ValidationError(f"Device.fma_chains must be a number in [1, 64], got {v!r}")
        given = dict(self.class_overhead or {})
        _frozen(given, REGIMES, "class_overhead", lo=0.0, hi=1.0)   # validates
        object.__setattr__(self, "class_overhead",
                           MappingProxyType({k: float(v) for k, v in given.items()}))
        for f in ("cache_bytes", "overhead", "reorder_overhead", "run_overhead", "layer_gap",
                  "image_pass_cost", "split_row_cost",
                  "dram_energy_per_byte", "cache_energy_per_byte", "shared_cache_bytes",
                  "shared_cache_energy_per_byte"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
                raise ValidationError(f"Device.{f} must be a finite number >= 0, got {v!r}")
        if self.has_shared_cache and self.shared_cache_bandwidth is None:
            raise ValidationError("Device.shared_cache_bandwidth is required when "
                                  f"shared_cache_bytes ({self.shared_cache_bytes}) exceeds "
                                  f"cache_bytes ({self.cache_bytes})")

    # ---------------------------------------------------------------- views
    @property
    def has_shared_cache(self) -> bool:
        """Whether the device has a shared cache level beyond ``cache_bytes``."""
        return self.shared_cache_bytes > self.cache_bytes

    def whole_run_gap(self, layer_seconds) -> float:
        """Seconds a whole inference adds to its layers' times.

        Parameters
        ----------
        layer_seconds : array_like
            Each layer's time, timed alone.

        Returns
        -------
        float
            ``layer_gap · Σ (t / GAP_REFERENCE) ** layer_gap_exponent``.

        Examples
        --------
        >>> dev = Device.preset("rpi4").replace(layer_gap=1e-6, layer_gap_exponent=0.5)
        >>> round(dev.whole_run_gap([10e-6, 40e-6]) * 1e6, 3)   # 1 µs + 2 µs
        3.0
        """
        t = np.maximum(np.asarray(layer_seconds, float), 0.0)
        return float(self.layer_gap * np.sum((t / GAP_REFERENCE) ** self.layer_gap_exponent))

    def ridge_point(self, precision: str = "fp32") -> float:
        """Arithmetic intensity (FLOP/byte) where the roofline's ceilings meet."""
        return self.peak(precision) / self.dram_bandwidth

    def regime_overhead(self, regime: str) -> float:
        """Fixed seconds of one primitive of ``regime`` (see ``REGIMES``)."""
        if regime not in REGIMES:
            raise ValidationError(f"regime must be one of {REGIMES}, got {regime!r}")
        while regime not in self.class_overhead and regime in REGIME_PARENTS:
            regime = REGIME_PARENTS[regime]
        return self.class_overhead.get(regime, self.overhead)

    def layer_latency(self, regime: str, compute: float, memory: float,
                      reorder_bytes: float = 0.0, cross_core_bytes: float = 0.0,
                      image_passes: float = 0.0, split_rows: float = 0.0,
                      primitives: float = 1.0) -> float:
        """Seconds of one layer of ``regime`` from its compute and memory times.

        ``compute`` and ``memory`` are the roofline times at the regime's
        efficiencies; the shorter is partly exposed (``overlap``), the
        regime's fixed cost is added once per primitive the layer runs as
        (``primitives``: a split runs one copy per output), a layout conversion of
        ``reorder_bytes`` (read + written) in front of the layer if any,
        ``cross_core_bytes`` read from other cores' caches (see
        ``cross_core_cost``), ``image_passes`` extra passes of a
        per-image kernel (see ``image_pass_cost``) and ``split_rows`` pieces
        of a depthwise kernel split across cores (see ``split_row_cost``).
        """
        body = max(compute, memory) + self.overlap[regime] * min(compute, memory)
        reorder = self.reorder_time(reorder_bytes) if reorder_bytes else 0.0
        cross = cross_core_bytes * self.cross_core_cost[regime]
        return (body + primitives * self.regime_overhead(regime) + reorder + cross
                + image_passes * self.image_pass_cost + split_rows * self.split_row_cost)

    def reorder_time(self, nbytes: float) -> float:
        """Seconds of a layout conversion that reads and writes ``nbytes`` in all."""
        near_bw = self.reorder_bandwidth or self.cache_bandwidth
        return float(conversion_seconds(nbytes, self.reorder_overhead, near_bw,
                                        self.reorder_far_bandwidth or near_bw, self.cache_bytes))

    def peak(self, precision: str = "fp32") -> float:
        """Peak FLOP/s at ``precision`` (the fp32 rate if not native)."""
        if precision not in PRECISIONS:
            raise ValidationError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        return self.peak_flops[precision] or self.peak_flops["fp32"]

    def to_spec(self):
        """The C++ ``DeviceSpec`` (private)."""
        from .. import _core
        spec = _core.DeviceSpec()
        spec.peak_flops = [self.peak_flops[p] for p in PRECISIONS]
        spec.energy_per_mac = [self.energy_per_mac[p] for p in PRECISIONS]
        spec.cache_bytes = float(self.cache_bytes)
        spec.cache_bandwidth = float(self.cache_bandwidth)
        spec.cache_read_bandwidth = float(self.cache_read_bandwidth or 0.0)
        if self.has_shared_cache:
            spec.shared_cache_bytes = float(self.shared_cache_bytes)
            spec.shared_cache_bandwidth = float(self.shared_cache_bandwidth)
        spec.dram_bandwidth = float(self.dram_bandwidth)
        spec.dram_write_cost = float(self.dram_write_cost)
        spec.cache_energy_per_byte = float(self.cache_energy_per_byte)
        spec.dram_energy_per_byte = float(self.dram_energy_per_byte)
        spec.shared_cache_energy_per_byte = float(self.shared_cache_energy_per_byte)
        spec.overhead = float(self.overhead)
        spec.compute_efficiency = [self.compute_efficiency[c] for c in OP_CLASSES]
        # conv1x1, per-regime overheads and reorders are applied in Python.
        spec.memory_efficiency = [self.memory_efficiency[c] for c in OP_CLASSES]
        return spec

    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON form (``Device.from_dict`` reads it back)."""
        return {f.name: dict(getattr(self, f.name)) if isinstance(getattr(self, f.name), Mapping)
                else getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Device":
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "Device":
        """A copy with some figures changed (devices are immutable)."""
        return replace(self, **changes)

    # -------------------------------------------------------------- presets
    @staticmethod
    def presets() -> Dict[str, "Device"]:
        """The datasheet presets, by name."""
        return dict(_PRESETS)

    @staticmethod
    def preset(name: str) -> "Device":
        """A preset by name (see :meth:`presets`)."""
        if not isinstance(name, str) or name not in _PRESETS:
            raise ValidationError(f"device: unknown preset {name!r}; presets are "
                                  f"{sorted(_PRESETS)} (or 'host' for Device.from_host())")
        return _PRESETS[name]

    @staticmethod
    def resolve(device: "Device | str") -> "Device":
        """A Device from a Device, a preset name or ``"host"``."""
        if isinstance(device, Device):
            return device
        if device == "host":
            return Device.from_host()
        return Device.preset(device)

    # ----------------------------------------------------------------- host
    @staticmethod
    def from_host(refresh: bool = False, threads: Optional[int] = None,
                  cache_dir: Optional[os.PathLike] = None, progress: bool = False) -> "Device":
        """Measure this machine with oneDNN micro-benchmarks (cached).

        Measures fp32 and int8 GEMM peaks, DRAM and cache streaming bandwidth
        (oneDNN reorders) and the fixed cost of a tiny primitive, then fits
        each regime's compute and memory efficiency, fixed cost and
        cross-core cost (batches smaller than ``threads``), and the
        cost of a layout conversion, on the layers of real networks
        (``lpcv.cost._host.CALIBRATION_MODELS``, batch 1 and 16) timed by
        :meth:`lpcv.Session.profile`, in five passes with the
        micro-benchmarks repeated before each. Takes three to four minutes;
        keep the machine otherwise idle.
        The result is cached as JSON in the user cache directory
        (``$XDG_CACHE_HOME/lpcv`` or ``~/.cache/lpcv``), keyed by CPU model
        and thread count; ``refresh=True`` measures again.

        Parameters
        ----------
        refresh : bool
            Ignore the cache and measure again.
        threads : int, optional
            Threads to measure with (default: all cores).
        cache_dir : path, optional
            Where to keep the cached measurement.
        progress : bool
            Show a progress bar.
        """
        from ._host import measure_host
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValidationError(f"threads must be a positive int, got {threads!r}")
        threads = threads or os.cpu_count() or 1
        key = hashlib.sha1(f"{_cpu_model()}|{threads}|{_LIBRARY_KEY}".encode()).hexdigest()[:12]
        folder = Path(cache_dir) if cache_dir else _user_cache_dir()
        path = folder / f"host-{key}.json"
        if not refresh and path.is_file():
            try:
                return Device.from_dict(json.loads(path.read_text())["device"])
            except (ValueError, KeyError, TypeError, ValidationError):
                pass  # a stale or damaged cache file is measured again
        device = measure_host(threads=threads, progress=progress)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                   "device": device.to_dict()}, indent=1))
        os.replace(tmp, path)
        return device


# Bump when the measurement procedure changes, so old caches are ignored.
_LIBRARY_KEY = "host-v34"


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lpcv"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_GB = 1e9
_MB = 1024 * 1024

# Efficiency defaults for the datasheet presets: STREAM-like sustained
# bandwidth is ~55% of the LPDDR4 interface peak on these SoCs, and
# depthwise/pooling/element-wise kernels stream rather than reuse.
_ARM_MEMORY = {"conv": 0.55, "depthwise": 0.55, "gemm": 0.55, "pool": 0.55,
               "eltwise": 0.55, "data": 0.55}

_PRESETS: Dict[str, Device] = {
    "rpi4": Device(
        # Raspberry Pi 4 Model B: BCM2711, 4× Cortex-A72 @ 1.5 GHz, one
        # 128-bit NEON FMA per cycle per core = 8 fp32 FLOP/cycle/core
        # (48 GFLOP/s); no fp16/dot-product arithmetic (Armv8.0): int8 via
        # widening multiply-accumulate at ~2× the fp32 rate. LPDDR4-3200 on a
        # 32-bit bus = 12.8 GB/s; 1 MB shared L2. (Raspberry Pi 4 product
        # brief; Arm Cortex-A72 software optimization guide.)
        name="rpi4", peak_flops={"fp32": 48e9, "int8": 96e9},
        dram_bandwidth=12.8 * _GB, cache_bytes=1 * _MB, cache_bandwidth=48 * _GB,
        overhead=10e-6, memory_efficiency=_ARM_MEMORY, threads=4, vector_lanes=4,
        description="Raspberry Pi 4 (4× Cortex-A72 @ 1.5 GHz, LPDDR4-3200)",
        source="Raspberry Pi 4 product brief; Arm Cortex-A72 optimization guide"),
    "jetson-nano-cpu": Device(
        # Jetson Nano: 4× Cortex-A57 @ 1.43 GHz, 8 fp32 FLOP/cycle/core
        # (45.8 GFLOP/s); LPDDR4 64-bit @ 1600 MHz = 25.6 GB/s; 2 MB L2.
        # (NVIDIA Jetson Nano module data sheet DA-09366.)
        name="jetson-nano-cpu", peak_flops={"fp32": 45.8e9, "int8": 91.5e9},
        dram_bandwidth=25.6 * _GB, cache_bytes=2 * _MB, cache_bandwidth=45 * _GB,
        overhead=10e-6, memory_efficiency=_ARM_MEMORY, threads=4, vector_lanes=4,
        description="Jetson Nano CPU (4× Cortex-A57 @ 1.43 GHz, LPDDR4 25.6 GB/s)",
        source="NVIDIA Jetson Nano data sheet DA-09366"),
    "jetson-nano-gpu": Device(
        # Jetson Nano GPU: 128 Maxwell CUDA cores @ 921 MHz: 236 GFLOP/s fp32,
        # 472 GFLOP/s fp16; no int8 dot product on sm_53. Shares the 25.6 GB/s
        # LPDDR4; 256 KB L2; ~20 µs per kernel launch. Its threads share out
        # output positions, not channels: no lane padding (vector_lanes 1).
        name="jetson-nano-gpu", peak_flops={"fp32": 236e9, "fp16": 472e9},
        dram_bandwidth=25.6 * _GB, cache_bytes=256 * 1024, cache_bandwidth=100 * _GB,
        overhead=20e-6, memory_efficiency=_ARM_MEMORY,
        description="Jetson Nano GPU (128 Maxwell cores @ 921 MHz)",
        source="NVIDIA Jetson Nano data sheet DA-09366 (472 GFLOPS fp16)"),
    "phone-big-core": Device(
        # One Cortex-A76 prime core @ 2.84 GHz (Snapdragon 855): two 128-bit
        # FMA pipes = 16 fp32 FLOP/cycle (45.4 GFLOP/s), fp16 2×, int8 SDOT
        # 4×; LPDDR4X-2133, 4×16-bit = 34.1 GB/s, of which one core sustains
        # about half; 512 KB L2 + 2 MB L3.
        name="phone-big-core", peak_flops={"fp32": 45.4e9, "fp16": 90.9e9, "int8": 181.8e9},
        dram_bandwidth=34.1 * _GB, cache_bytes=2.5 * _MB, cache_bandwidth=90 * _GB,
        overhead=3e-6,
        memory_efficiency={k: 0.5 for k in _ARM_MEMORY}, vector_lanes=4,
        description="Phone big core (Cortex-A76 @ 2.84 GHz, LPDDR4X 34.1 GB/s)",
        source="Qualcomm Snapdragon 855 product brief; Arm Cortex-A76 optimization guide"),
    "x86-avx512-core": Device(
        # One Xeon Cascade Lake core at its 2.0 GHz AVX-512 frequency: two
        # 512-bit FMA units = 64 fp32 FLOP/cycle (128 GFLOP/s), int8 VNNI 4×;
        # about 12 GB/s of DRAM bandwidth per core; 1 MB L2 + 1.375 MB L3.
        name="x86-avx512-core",
        peak_flops={"fp32": 128e9, "bf16": 128e9, "int8": 512e9},
        dram_bandwidth=12 * _GB, cache_bytes=2.375 * _MB, cache_bandwidth=100 * _GB,
        overhead=1.5e-6, vector_lanes=16,
        description="x86 server core (Xeon Cascade Lake, AVX-512 VNNI @ 2.0 GHz)",
        source="Intel Xeon Scalable (2nd gen) specification; Intel optimization manual"),
}
