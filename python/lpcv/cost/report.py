"""``lpcv.cost.profile``: what every layer of a model costs on a device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np

from .. import _core
from .._report import Table
from ..exceptions import ValidationError
from ..graph import Model
from ._counting import (LayerCount, count_layers, lane_use, lower, tensor_lifetimes, vectors,
                        view_sources)
from .device import OP_CLASSES, POST_OP_REGIME, POST_OPS_APART, PRECISIONS, Device
from .storage import BITS, WeightFormat

__all__ = ["profile", "CostReport", "ModelCost"]

#: Share of the cache an activation may reuse across layers: the reader's own
#: output and weight streams take the rest.
_REUSE_SHARE = 0.5


@dataclass(frozen=True)
class ModelCost:
    """Whole-model figures of a :class:`CostReport` (SI units)."""

    macs: int
    flops: int            # 2 × MACs
    other_ops: int        # compares, adds, activations: operations that are not MACs
    params: int
    weight_bytes: int
    activation_bytes: int  # read + written by all layers
    dram_bytes: float
    shared_cache_bytes: float  # served by the device's shared cache level instead of DRAM
    latency: float         # s, sum of layer latencies + the device's per-inference
    #                        overhead + its gap between consecutive layers
    energy: float          # J
    peak_activation_bytes: float
    layers: int

    def __str__(self) -> str:
        return (f"{self.macs / 1e6:,.1f} M MACs ({self.flops / 1e6:,.1f} M FLOPs), "
                f"{self.params:,} params, {self.weight_bytes / 1e6:.2f} MB weights, "
                f"latency {self.latency * 1e3:.3f} ms, energy {self.energy * 1e3:.3f} mJ, "
                f"peak activations {self.peak_activation_bytes / 1e6:.2f} MB")


def _advice(row: Dict[str, Any]) -> str:
    if row["op_class"] == "data":
        return "data movement: fuse or remove it; compression does not help"
    if row["bound"] == "memory":
        if row["weight_bytes"] > row["input_bytes"] + row["output_bytes"]:
            return "memory-bound on weights: quantize them (int8/int4); pruning saves little time"
        return ("memory-bound on activations: quantize activations or fuse layers; pruning or "
                "decomposition saves little time")
    return "compute-bound: pruning, low-rank decomposition or lower-precision compute cut time"


class CostReport(Table):
    """Per-layer costs on a device, with whole-model totals.

    Rows are the layers the runtime executes (fused ops). Columns: ``layer``,
    ``nodes``, ``op``, ``op_class``, ``precision``, ``macs``, ``flops`` (=
    2·MACs), ``other_ops``, ``params``, ``weight_bytes``, ``input_bytes``,
    ``output_bytes``, ``bytes``, ``dram_bytes`` (bytes moved to or from DRAM,
    re-reads included), ``shared_cache_bytes`` (bytes a shared cache level
    serves instead, see :class:`Device`), ``intensity`` (operations per
    byte moved), ``lane_use`` (share of the device's vector lanes the layer's
    channels fill; compute is priced on the padded vectors), ``chain_use``
    (share of the multiply-add throughput the layer's accumulator chains can
    use, see ``Device.fma_chains``; compute is priced at that share;
    ``chain_vectors`` is the number of chains, 0 when there is no limit),
    ``bound`` (the
    classic roofline label: below the ridge point with DRAM bandwidth is
    ``memory``), ``time_bound`` (which term dominates the predicted latency once
    cache hits are counted), ``compute_ms``, ``memory_ms`` (of which
    ``far_ms``: traffic beyond the near cache, to the shared cache level or
    DRAM, and of that ``dram_ms``: DRAM traffic), ``latency_ms``,
    ``energy_uj``, ``advice``, ``output_shape``, ``weight_reads`` (times the
    kernel streams the weights: once per image for a convolution with one
    output position per image, else 1), ``image_passes`` (passes of a
    ``conv_per_image`` kernel after its first, each priced at
    ``Device.image_pass_cost``), ``split_rows`` (pieces of a depthwise kernel
    split across cores, each priced at ``Device.split_row_cost``),
    ``primitives`` (oneDNN primitives the runtime runs for the layer, each
    paying the regime's fixed cost: a split runs one copy per output, else 1).
    """

    def __init__(self, rows, device: Device, model_name: str, batch_size: int,
                 total: ModelCost):
        super().__init__(rows, title=f"{model_name} on {device.name} (batch {batch_size})")
        self.device = device
        self.model_name = model_name
        self.batch_size = batch_size
        self.total = total

    def roofline(self, ax=None, precision: str = "fp32", annotate: int = 5):
        """A roofline plot with every layer placed on it.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        precision : str
            Which compute ceiling to draw.
        annotate : int
            Label the ``annotate`` slowest layers.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt
        if ax is None:
            fig, ax = plt.subplots(figsize=(7, 4.5))
        else:
            fig = ax.figure
        dev = self.device
        peak = dev.peak(precision)
        ai = np.array([max(r["intensity"], 1e-3) for r in self.rows])
        perf = np.array([r["ops"] / max(r["latency_ms"] * 1e-3, 1e-12) for r in self.rows])
        lo, hi = min(ai.min(), 0.05), max(ai.max(), dev.ridge_point(precision)) * 4
        xs = np.logspace(np.log10(lo), np.log10(hi), 200)
        ax.loglog(xs, np.minimum(peak, xs * dev.dram_bandwidth), "k-", lw=2,
                  label=f"roofline ({precision} peak, DRAM)")
        ax.axvline(dev.ridge_point(precision), color="grey", ls=":", lw=1)
        for cls, marker in zip(OP_CLASSES, "os^Dvx"):
            idx = [i for i, r in enumerate(self.rows) if r["op_class"] == cls]
            if idx:
                ax.scatter(ai[idx], perf[idx], marker=marker, label=cls, alpha=0.8)
        slow = sorted(range(len(self.rows)), key=lambda i: -self.rows[i]["latency_ms"])[:annotate]
        for i in slow:
            ax.annotate(self.rows[i]["layer"][:24], (ai[i], perf[i]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("arithmetic intensity (operations / byte)")
        ax.set_ylabel("attained operations / s")
        ax.set_title(self.title)
        ax.legend(fontsize=8, loc="lower right")
        return fig

    def _repr_html_(self) -> str:
        return f"<p>{self.total}</p>" + super()._repr_html_()


def profile(model: Model, device: Union[Device, str] = "host", batch_size: int = 1,
            formats: Optional[Mapping[str, WeightFormat]] = None,
            activation_precision: str = "fp32") -> CostReport:
    """Price every layer of ``model`` on ``device``.

    Parameters
    ----------
    model : Model
    device : Device or str
        A :class:`Device`, a preset name (``"rpi4"``, ``"jetson-nano-cpu"``,
        ``"jetson-nano-gpu"``, ``"phone-big-core"``, ``"x86-avx512-core"``) or
        ``"host"`` (measured, see :meth:`Device.from_host`).
    batch_size : int
    formats : mapping, optional
        Storage format of weights, keyed by initializer or layer name
        (default: their dtype, dense).
    activation_precision : str
        Precision activations are stored and computed at.

    Returns
    -------
    CostReport

    Raises
    ------
    UnsupportedOpError
        When the model has an op lpcv cannot price (the message lists them).

    Examples
    --------
    >>> import lpcv
    >>> rep = lpcv.cost.profile(lpcv.zoo.mobilenet_v2(), "rpi4")
    >>> round(rep.total.macs / 1e6)
    301
    >>> rep.to_pandas().groupby("op_class").latency_ms.sum().idxmax() in ("conv", "depthwise")
    True
    """
    if not isinstance(model, Model):
        raise ValidationError(f"model must be an lpcv.Model, got {type(model).__name__}")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValidationError(f"batch_size must be a positive int, got {batch_size!r}")
    if activation_precision not in PRECISIONS:
        raise ValidationError(f"activation_precision must be one of {PRECISIONS}, got "
                              f"{activation_precision!r}")
    dev = Device.resolve(device)
    low = lower(model, int(batch_size))
    layers = count_layers(low, formats, activation_precision, dev.vector_lanes)
    total_weights = sum(layer.weight_bytes for layer in layers)
    act_bytes = BITS[activation_precision] / 8
    # Reuse distance: an activation is still cached when it and everything
    # the layers since its producer wrote or streamed (outputs, weights) fit
    # in a share of the cache (LRU, with room left for the reader's own
    # streams).
    touched = 0.0
    written_at: Dict[str, float] = {}   # activation -> `touched` just after its producer
    # A free view (a reshape no layout conversion precedes) is its input's
    # bytes under another name: it was written when its input was (else the
    # reader of a reshape, e.g. ShuffleNet's channel-shuffle transposes,
    # was priced as reading DRAM: 70 % too slow at batch 1).
    source = view_sources(low, exclude={layer.name for layer in layers})

    def still_cached(data_in, capacity: float) -> bool:
        return bool(data_in) and all(
            source.get(t, t) in written_at
            and touched - written_at[source.get(t, t)] + low.infos[t].size * act_bytes
            <= capacity * _REUSE_SHARE for t in data_in)

    shared = dev.shared_cache_bytes if dev.has_shared_cache else 0.0
    # Without a shared level its flags are never read: skip the second walk.
    in_shared = still_cached if shared else (lambda data_in, capacity: False)
    # Weights that fit in half the near cache stay there from run to run.
    resident = total_weights <= dev.cache_bytes / 2
    # Weights that fit in the shared level stay there from run to run
    # (MobileNetV3-Large's 22 MB, with 32 MiB measured, streamed at batch 1
    # at the shared level's rate, 43 GB/s, not DRAM's 33: with half the
    # level as the bound its classifier came out 56 % too slow). At large
    # batches a run's activations pass through the level too, but then each
    # weight serves many images and its traffic matters little.
    weights_in_shared = total_weights <= shared
    # With fewer images than threads, primitives split images across cores.
    split = int(batch_size) < dev.threads
    counts = []
    for layer in layers:
        data_in = [t for t in layer.inputs if t not in low.model.initializers]
        near, far = still_cached(data_in, dev.cache_bytes), in_shared(data_in, shared)
        if layer.op_class == "data" and not split and far:
            # Copies (concat, split, transpose) deal their elements out to
            # the cores unlike their producer: with whole images per core
            # they still read their input at the shared level's rate
            # (ShuffleNet's batch-16 splits and transposes of 1.5 MB, in
            # the near cache by reuse distance, ran at 40-53 GB/s).
            near = False
        # A layer that overwrites its cached input writes lines its reads
        # just brought in: the writes move no bytes of their own (SE scales
        # at batch 16 ran ~1.7x faster than a copy of the same bytes).
        written = 0 if layer.in_place and (near or far) else layer.output_bytes
        counts.append(_core.LayerCounts(
            OP_CLASSES.index(layer.op_class), PRECISIONS.index(layer.precision),
            float(layer.compute_macs) / lane_use(layer.lane_channels, dev.vector_lanes)
            / _chain_use(layer, dev),
            float(layer.other_ops), float(layer.weight_traffic), float(layer.input_bytes),
            float(written), near, resident, float(layer.weight_reads),
            far, weights_in_shared))
        touched += layer.weight_traffic + layer.output_bytes
        written_at.update((t, touched) for t in layer.outputs)
    # The C++ core prices raw roofline terms (efficiencies 1, no overhead);
    # the regime's efficiencies, fixed costs and layout conversions are
    # applied per row below.
    spec = dev.to_spec()
    spec.compute_efficiency = [1.0] * len(OP_CLASSES)
    spec.memory_efficiency = [1.0] * len(OP_CLASSES)
    spec.overhead = 0.0
    costs = _core.estimate(counts, spec)
    rows = [_row(layer, c, dev, split, _regime(layer, resident))
            for layer, c in zip(layers, costs)]
    sizes, birth, death = tensor_lifetimes(low, activation_precision)
    peak = _core.peak_live_bytes(sizes, birth, death)
    total = ModelCost(
        macs=sum(r["macs"] for r in rows), flops=sum(r["flops"] for r in rows),
        other_ops=sum(r["other_ops"] for r in rows), params=model.num_parameters(),
        weight_bytes=total_weights,
        activation_bytes=sum(r["input_bytes"] + r["output_bytes"] for r in rows),
        dram_bytes=sum(r["dram_bytes"] for r in rows),
        shared_cache_bytes=sum(r["shared_cache_bytes"] for r in rows),
        latency=(sum(r["latency_ms"] for r in rows) * 1e-3 + dev.run_overhead
                 + dev.whole_run_gap([r["latency_ms"] * 1e-3 for r in rows])),
        energy=sum(c.compute_energy + c.memory_energy for c in costs),
        peak_activation_bytes=peak, layers=len(rows))
    return CostReport(rows, dev, model.name, int(batch_size), total)


#: Output columns per block of oneDNN's matrix products, the unit they split
#: across cores: a product with one block (10 classes) runs on one core, with
#: no fork-join (0.6-0.8 µs where two-block ones took 2-3 µs).
_GEMM_COLUMN_BLOCK = 64


def post_op_seconds(macs: float, other_ops: float, peak: float, regime: str) -> float:
    """Compute seconds at efficiency 1 of the element-wise operations (bias,
    activation) fused into a layer of ``regime`` with ``macs``
    multiply-adds, the part of the core's compute term priced at
    ``POST_OP_REGIME``'s efficiency; 0 outside ``POST_OPS_APART`` and for
    a layer without multiply-adds, whose other operations are its own work
    (pooling, element-wise layers)."""
    return 2.0 * other_ops / peak if macs > 0 and regime in POST_OPS_APART else 0.0


def _regime(layer: LayerCount, weights_resident: bool) -> str:
    """``layer``'s regime on a device: matrix products whose weights stay in
    the near cache (``weights_resident``) and that split their columns
    across cores are ``gemm_resident``."""
    if (layer.regime == "gemm" and weights_resident
            and layer.lane_channels > _GEMM_COLUMN_BLOCK):
        return "gemm_resident"
    return layer.regime


def _chain_vectors(layer: LayerCount, lanes: int) -> int:
    """Accumulator vectors a ``conv_per_image`` kernel keeps per call (one
    output position: one vector per ``lanes`` output channels); 0 for the
    other layers, whose many output positions give enough."""
    if layer.regime != "conv_per_image" or layer.lane_channels <= 0:
        return 0
    return vectors(layer.lane_channels, lanes)


def _chain_use(layer: LayerCount, dev: Device) -> float:
    """Share of the cores' multiply-add throughput a layer's independent
    accumulator chains can use (``Device.fma_chains``)."""
    chains = _chain_vectors(layer, dev.vector_lanes)
    return min(1.0, chains / dev.fma_chains) if chains else 1.0


def _image_passes(layer: LayerCount) -> int:
    """Passes of a per-image kernel after its first (``Device.image_pass_cost``)."""
    return layer.weight_reads - 1 if layer.regime == "conv_per_image" else 0


def _split_rows(layer: LayerCount, lanes: int, split: bool) -> int:
    """Pieces (output row × channel vector × image) of a depthwise kernel
    split across cores (``Device.split_row_cost``); 0 for the other layers
    and when each core takes whole images."""
    if not split or layer.regime != "depthwise" or len(layer.output_shape) < 3:
        return 0
    n, rows = int(layer.output_shape[0]), int(layer.output_shape[2])
    return n * vectors(max(layer.lane_channels, 1), lanes) * rows


def _row(layer: LayerCount, c, dev: Device, split: bool, regime: str) -> Dict[str, Any]:
    ops = 2 * layer.macs + layer.other_ops
    moved = layer.weight_bytes + layer.input_bytes + layer.output_bytes
    intensity = ops / moved if moved else float("inf")
    ce, me = dev.compute_efficiency[regime], dev.memory_efficiency[regime]
    # The efficiency scales the traffic beyond the near cache only (see the
    # C++ core).
    dram, far = c.dram_time / me, c.far_time / me
    post = post_op_seconds(layer.macs, layer.other_ops, dev.peak(layer.precision), regime)
    compute = (c.compute_time - post) / ce + post / dev.compute_efficiency[POST_OP_REGIME]
    memory = far + (c.memory_time - c.far_time)
    reorder = dev.reorder_time(layer.reorder_bytes) if layer.reorder_bytes else 0.0
    cross = layer.input_bytes if split and layer.op != "Reorder" else 0
    passes, pieces = _image_passes(layer), _split_rows(layer, dev.vector_lanes, split)
    if layer.op == "Reorder":   # a layout conversion alone (in front of a reshape)
        latency = reorder
    else:
        latency = dev.layer_latency(regime, compute, memory, layer.reorder_bytes, cross,
                                    passes, pieces, layer.primitives)
    # The label is the classic roofline's: is the layer below the ridge point
    # when its bytes stream from DRAM? Latency below uses the cache model.
    attainable = min(dev.peak(layer.precision) * ce, intensity * dev.dram_bandwidth * me)
    bound = "memory" if attainable < dev.peak(layer.precision) * ce else "compute"
    row = {
        "layer": layer.name, "nodes": ", ".join(layer.nodes), "op": layer.op,
        "op_class": layer.op_class, "regime": regime, "precision": layer.precision,
        "macs": layer.macs, "flops": 2 * layer.macs, "other_ops": layer.other_ops, "ops": ops,
        "params": layer.params, "weight_bytes": layer.weight_bytes,
        "input_bytes": layer.input_bytes, "output_bytes": layer.output_bytes, "bytes": moved,
        "dram_bytes": c.dram_bytes, "shared_cache_bytes": c.shared_cache_bytes,
        "intensity": intensity, "bound": bound,
        "lane_use": lane_use(layer.lane_channels, dev.vector_lanes),
        "chain_use": _chain_use(layer, dev),
        "chain_vectors": _chain_vectors(layer, dev.vector_lanes),
        "time_bound": "memory" if memory > compute else "compute",
        "compute_ms": compute * 1e3, "memory_ms": memory * 1e3, "far_ms": far * 1e3,
        "dram_ms": dram * 1e3,
        "reorder_bytes": layer.reorder_bytes, "reorder_ms": reorder * 1e3,
        "cross_core_bytes": cross, "cross_core_ms": cross * dev.cross_core_cost[regime] * 1e3,
        "weight_reads": layer.weight_reads, "image_passes": passes, "split_rows": pieces,
        "primitives": layer.primitives,
        "latency_ms": latency * 1e3, "energy_uj": (c.compute_energy + c.memory_energy) * 1e6,
        "output_shape": "x".join(map(str, layer.output_shape)),
    }
    row["advice"] = _advice(row)
    return row
