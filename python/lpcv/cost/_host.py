"""Measurement of this machine for :meth:`lpcv.cost.Device.from_host`."""
from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import _core
from ..graph import Model
from .device import GAP_REFERENCE, POST_OP_REGIME, Device, _cpu_model, conversion_seconds

_MB = 1024 * 1024


def _sysfs_cache_bytes(level: int, root: str = "/sys/devices/system/cpu/cpu0/cache") -> float:
    """Size of cpu0's data or unified cache of ``level`` from sysfs, bytes; 0 if unknown."""
    size = 0.0
    for folder in glob.glob(os.path.join(root, "index*")):
        try:
            found = int(open(os.path.join(folder, "level")).read())
            kind = open(os.path.join(folder, "type")).read().strip()
            text = open(os.path.join(folder, "size")).read().strip().upper()
        except (OSError, ValueError):
            continue
        if found == level and kind in ("Unified", "Data"):
            mult = {"K": 1024, "M": _MB, "G": 1024 * _MB}.get(text[-1], 1)
            try:
                size = float(text.rstrip("KMG")) * mult
            except ValueError:
                continue
    return size


def _cache_bytes(threads: int) -> float:
    """Private (level-2) cache of the cores used, from sysfs; 1 MiB per core if unknown.

    The shared last-level cache is measured apart (:func:`shared_cache_figures`):
    on servers and VMs other tenants use it too, so only what a copy
    measurably keeps in it counts. Pricing it moved the fidelity bench
    within noise on an Intel VM whose copies stayed in it up to 16 MiB, and
    by +4 points of layers within ±20 % on a 2-vCPU EPYC VM (32 MiB L3, the
    batch-16 activations of the mobile networks held there).
    """
    return (_sysfs_cache_bytes(2) or float(_MB)) * threads


def shared_cache_capacity(footprints, bandwidths, dram_bandwidth: float) -> float:
    """The largest copy footprint still served by a shared cache level.

    ``bandwidths`` are copy bandwidths at growing ``footprints`` (source +
    destination bytes), the first inside the shared level; a footprint is
    still served while its bandwidth stays at least halfway from
    ``dram_bandwidth`` (the same copy out of DRAM) to the first one. 0 when
    the first is no faster than DRAM (no usable shared level).
    """
    footprints, bandwidths = np.asarray(footprints, float), np.asarray(bandwidths, float)
    if footprints.size == 0 or bandwidths[0] <= dram_bandwidth:
        return 0.0
    served = bandwidths >= (bandwidths[0] + dram_bandwidth) / 2
    # The first footprint that falls below ends the level (a later, noisy
    # fast one does not bring it back).
    ends = np.flatnonzero(~served)
    last = ends[0] - 1 if ends.size else footprints.size - 1
    return float(footprints[last]) if last >= 0 else 0.0


def shared_cache_figures(threads: int, private_bytes: float, dram_copy_bandwidth: float,
                         root: str = "/sys/devices/system/cpu/cpu0/cache") -> Dict[str, float]:
    """Capacity (bytes) and bandwidth (bytes/s) of the shared cache level
    beyond the private caches, measured with oneDNN copies of footprints
    doubling from twice the private caches up to the level's size in sysfs
    (both 0 when sysfs shows no larger level). Copy bandwidths count two
    transfers per byte, as the private cache's do, and so must
    ``dram_copy_bandwidth``, the same copy out of DRAM."""
    level = _sysfs_cache_bytes(3, root)
    if level <= 2 * private_bytes:
        return {"shared_bytes": 0.0, "shared_bw": 0.0}

    def copy_bandwidth(footprint: float) -> float:
        half = int(footprint / 2)
        repeats = int(np.clip(512 * _MB / footprint, 3, 50))
        return 2 * half / _core.time_copy(half, repeats, threads)

    footprints = []
    f = 2 * private_bytes
    while f <= level:
        footprints.append(f)
        f *= 2
    bandwidths = [copy_bandwidth(f) for f in footprints]
    return {"shared_bytes": shared_cache_capacity(footprints, bandwidths, dram_copy_bandwidth),
            "shared_bw": bandwidths[0]}


def cache_copy_bandwidth(cache_bytes: float, threads: int) -> float:
    """Bytes/s (read + written) of oneDNN copies within the private caches:
    the slope between copies of a sixteenth and a quarter of ``cache_bytes``.

    The slope drops the copy's fixed cost, which the regimes price apart:
    on a 2-vCPU EPYC VM (2 × 512 KiB L2) the fork-join of a 256 KiB copy
    (1.8 µs of its 9 µs) put the cores' cache below the shared L3 (45 vs
    60 GB/s), whose copies are long enough not to show it. The slope,
    made noisy by one slow repeat, is kept between 1× and 3× the larger
    copy's own rate (which, fixed cost included, is a lower bound).
    """
    small, large = int(cache_bytes / 16), int(cache_bytes / 4)
    t_small, t_large = (_core.time_copy(n, 50, threads) for n in (small, large))
    direct = 2 * large / t_large
    slope = 2 * (large - small) / max(t_large - t_small, 1e-12)
    return float(np.clip(slope, direct, 3 * direct))


def cache_read_bandwidth(cache_bytes: float, threads: int) -> float:
    """Bytes/s at which the cores only read from their private caches: the
    slope between two oneDNN matrix-vector products whose matrices fill an
    eighth and a half of ``cache_bytes`` (the slope drops the products'
    fixed cost; vector and result are a few kilobytes)."""
    columns = 512 * threads   # eight 64-column blocks per core
    small, large = (max(int(f * cache_bytes / (4 * columns)), 16) for f in (1 / 8, 1 / 2))
    t_small, t_large = (_core.time_matmul(1, columns, rows, "float32", 200, threads)
                        for rows in (small, large))
    return 4.0 * columns * (large - small) / max(t_large - t_small, 1e-9)


def _vector_lanes(cpuinfo: str = "/proc/cpuinfo") -> int:
    """fp32 lanes of this CPU's widest vectors oneDNN uses, from its flags:
    16 with AVX-512, 8 with AVX/AVX2, 4 with SSE or NEON (1 if unknown)."""
    flags = set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.split(":", 1)[0].strip() in ("flags", "Features"):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    if "avx512f" in flags:
        return 16
    if "avx" in flags:
        return 8
    return 4 if flags & {"sse2", "asimd", "neon"} else 1


#: Networks whose layers calibrate the efficiencies, with batch sizes. They
#: are kept apart from the networks ``bench/cost_fidelity.py`` validates on
#: (resnet18, mobilenet_v2 and the Fashion-MNIST reference models), so the
#: fit is not judged on its own training data.
CALIBRATION_MODELS = (
    ("resnet50", 1), ("resnet50", 16),
    ("mobilenet_v3_large", 1), ("mobilenet_v3_large", 16),
    ("efficientnet_b0", 1), ("efficientnet_b0", 16),
    ("squeezenet1_1", 1), ("squeezenet1_1", 16),
    ("shufflenet_v2_x1_0", 1), ("shufflenet_v2_x1_0", 16),
    ("fmnist-lenet5", 1), ("fmnist-lenet5", 16),
    # Small inputs and widths: layers so small their fixed cost dominates.
    ("mobilenet_v1@64x0.25", 1), ("mobilenet_v1@64x0.25", 16),
    ("resnet50@32", 1), ("resnet50@32", 16),
    # Matrix products on weights that stay in the near cache (1.2 MB), of
    # other shapes than the validated LeNet-300's: LeNet-5's two such
    # products alone left the gemm_resident regime's five figures loose.
    # No 10-class layer: a one-block product, it would join the gemm
    # regime's large products and move their fit (refitted on one run's
    # measurements with it, 28 instead of 33 of the 40 validated gemm
    # layers were within ±20 %).
    ("mlp-1024-256-128", 1), ("mlp-1024-256-128", 16),
)


#: Passes through the calibration models (about 30 s each); each layer keeps
#: its median time. Five spread over some 2.5 minutes: with three (1.5 min)
#: the fit still leaned on that minute's machine speed.
_CALIBRATION_PASSES = 5


def _mlp(widths: List[int]) -> Model:
    """Fully connected layers ``widths[0] -> ... -> widths[-1]`` with ReLUs
    between them (random weights, seed 0)."""
    from .._builder import GraphBuilder
    b = GraphBuilder("mlp-" + "-".join(map(str, widths)))
    x = b.input("input", ("N", widths[0]))
    for i, width in enumerate(widths[1:]):
        x = b.gemm(x, width)
        if i < len(widths) - 2:
            x = b.relu(x)
    return b.build([x])


def _calibration_model(spec: str) -> Model:
    """A zoo or reference model from ``name[@resolution[xwidth_mult]]``, or
    a multilayer perceptron from ``mlp-<in>-<hidden>...-<out>``."""
    from .. import zoo
    if spec.startswith("mlp-"):
        return _mlp([int(w) for w in spec[4:].split("-")])
    name, _, size = spec.partition("@")
    if name in zoo.reference_names():
        return zoo.reference(name)
    kwargs = {}
    if size:
        res, _, width = size.partition("x")
        kwargs["resolution"] = int(res)
        if width:
            kwargs["width_mult"] = float(width)
    return getattr(zoo, name)(**kwargs)


#: Key of :func:`layer_times`' entry for the whole run (a name no layer
#: has: node names come from the model, the runtime's own steps are named
#: like "<output reorder>").
WHOLE_RUN = "<whole run>"


def layer_times(model: Model, batch: int, threads: int,
                flops_per_repeat: float = 1e10) -> Dict[str, Tuple[float, float]]:
    """Measured (time, layout-conversion time) of every layer of ``model``, in
    seconds, and under ``WHOLE_RUN`` the whole inference: medians over
    rounds that each time every layer once and then the whole model
    (:func:`~lpcv.cost.validate.interleaved_times`; a whole run is the sum
    of its layers' typical times, not of their fastest ones). Repeated runs
    belong to :func:`calibration_times`, spread over minutes."""
    from ..runtime import Session
    from .report import profile
    from .validate import interleaved_times
    # Operation counts do not depend on the device.
    flops = profile(model, "x86-avx512-core", batch).total.flops
    repeats = int(np.clip(flops_per_repeat / max(flops, 1), 3, 30))
    sess = Session(model, batch_size=batch, threads=threads)
    # Measured as validate measures (each round: the layers, then the whole
    # run), in as many runs as ``repeats`` profiled and benchmarked runs.
    # Timed apart (all profiled runs, then all whole ones), whole runs
    # exceeded the summed layers by -10 to +16 % from pass to pass; the
    # interleaved rounds agree on it.
    times, whole = interleaved_times(sess, max(3, -(-repeats // 2)))
    times[WHOLE_RUN] = (whole, 0.0)
    return times


def layer_samples(model: Model, batch: int, base: Device,
                  times: Dict[str, Tuple[float, float]]) -> List[Dict[str, float]]:
    """Raw roofline terms of every layer of ``model`` with its measured times.

    ``compute`` and ``memory`` are the layer's roofline times on ``base`` at
    efficiency 1 (seconds), ``far`` the part of ``memory`` that is traffic
    beyond the near cache (shared level and DRAM; the memory efficiency
    scales only that part), ``reorder_bytes``
    the predicted layout conversions, ``cross_core_bytes`` the input read
    from other cores' caches; ``time`` and ``reorder_time`` come from
    ``times`` (see :func:`layer_times`).
    """
    from .report import post_op_seconds, profile

    raw = base.replace(compute_efficiency={}, memory_efficiency={}, overhead=0.0,
                       class_overhead={}, reorder_overhead=0.0, overlap={},
                       cross_core_cost={}, image_pass_cost=0.0, split_row_cost=0.0,
                       fma_chains=1.0)
    rep = profile(model, raw, batch)
    return [{"layer": r["layer"], "regime": r["regime"], "op": r["op"], "batch": batch,
             "compute": r["compute_ms"] * 1e-3, "memory": r["memory_ms"] * 1e-3,
             "far": r["far_ms"] * 1e-3,
             "reorder_bytes": r["reorder_bytes"], "cross_core_bytes": r["cross_core_bytes"],
             "image_passes": r["image_passes"], "split_rows": r["split_rows"],
             "primitives": r["primitives"],
             "chain_vectors": r["chain_vectors"],
             # Multiply-add time alone (no post-ops), which chains limit; only
             # read for per-image convolutions, dense ones that run every tap,
             # so their MACs are the ones the kernel runs.
             "mac_compute": 2 * r["macs"] / r["lane_use"] / raw.peak(r["precision"]),
             # Fused element-wise operations, priced at POST_OP_REGIME's
             # efficiency (see Device.compute_efficiency).
             "post_compute": post_op_seconds(r["macs"], r["other_ops"],
                                             raw.peak(r["precision"]), r["regime"]),
             "time": times[r["layer"]][0], "reorder_time": times[r["layer"]][1]}
            for r in rep.rows if r["layer"] in times]


def calibration_times(threads: int, passes: int = _CALIBRATION_PASSES, progress=None,
                      between_passes=None) -> Dict[Tuple[str, int], Dict[str, Tuple[float, float]]]:
    """:func:`layer_times` of every calibration model, each layer timed by
    its median over ``passes`` passes through the whole list.

    The passes are spread over the minutes the list takes: this
    machine's speed can move by 10-25 % for tens of seconds (a VM's
    neighbours, frequency steps), both ways, and a fit on one such spell
    predicts every network too slow or too fast; back-to-back repeats cannot
    see past it, the median of spread passes does. ``between_passes`` is
    called before each pass (the host's micro-benchmarks are repeated there).
    """
    times: Dict[Tuple[str, int], Dict[str, List[Tuple[float, float]]]] = {}
    for _ in range(passes):
        if between_passes is not None:
            between_passes()
        for name, batch in CALIBRATION_MODELS:
            run = layer_times(_calibration_model(name), batch, threads)
            for layer, t in run.items():
                times.setdefault((name, batch), {}).setdefault(layer, []).append(t)
            if progress is not None:
                progress.update()
    return {case: {layer: tuple(float(v) for v in np.median(np.array(ts), axis=0))
                   for layer, ts in layers.items()}
            for case, layers in times.items()}


_CE_GRID = np.geomspace(0.02, 1.0, 48)
_ME_GRID = np.geomspace(0.02, 1.0, 48)
# Fixed costs up to 30 µs: a wider range let the fixed cost absorb
# proportional misfits of large layers and over-price tiny ones.
_OV_GRID = np.concatenate([[0.0], np.geomspace(0.5e-6, 30e-6, 30)])
_OVERLAP_GRID = np.linspace(0.0, 1.0, 11)
# Seconds per byte read across cores: none, or 2-200 GB/s.
_CROSS_GRID = np.concatenate([[0.0], 1 / np.geomspace(200e9, 2e9, 12)])
# Seconds per extra image of a per-image kernel: none, or 0.05-5 µs.
_PASS_GRID = np.concatenate([[0.0], np.geomspace(0.05e-6, 5e-6, 16)])
# Seconds per piece of a depthwise kernel split across cores: none, or 2-200 ns.
_ROW_GRID = np.concatenate([[0.0], np.geomspace(2e-9, 200e-9, 16)])
# Independent multiply-add chains a core needs (latency × units): 1-64.
_CHAIN_GRID = np.array([1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0])


def _refined(value: float, grid: np.ndarray, points: int = 8) -> np.ndarray:
    """A finer grid within one step of ``grid`` around ``value`` (kept in
    [grid's first, grid's last]), ``value`` included."""
    step = grid[1] / grid[0]
    fine = value * step ** np.linspace(-1.0, 1.0, 2 * points + 1)
    return np.unique(np.clip(fine, grid[0], grid[-1]))


def _loss(pred, t):
    # Squared log error, capped so a few odd layers do not pull the fit.
    return np.minimum(np.log(pred / t) ** 2, np.log(1.5) ** 2)


def fit_reorders(nbytes: np.ndarray, seconds: np.ndarray, bandwidth: float,
                 cache_bytes: float) -> Tuple[float, float, float]:
    """(fixed seconds, bytes/s, bytes/s beyond ``cache_bytes``) of layout
    conversions, fitted on measured ones."""
    if nbytes.size == 0:
        return 0.0, bandwidth, bandwidth
    bw_grid = np.geomspace(bandwidth / 30, bandwidth * 3, 60)
    best = (np.inf, 0.0, bandwidth, bandwidth)
    near_bw = bw_grid[None, :, None]
    # The far rate only where some conversion spills (else it is the near one).
    for far_bw in (bw_grid if (nbytes > cache_bytes).any() else [None]):
        pred = conversion_seconds(nbytes[None, None, :], _OV_GRID[:, None, None], near_bw,
                                  far_bw or near_bw, cache_bytes)
        loss = _loss(pred, seconds[None, None, :]).sum(axis=-1)
        i, j = np.unravel_index(np.argmin(loss), loss.shape)
        if loss[i, j] < best[0] - 1e-12:
            best = (loss[i, j], float(_OV_GRID[i]), float(bw_grid[j]),
                    float(far_bw or bw_grid[j]))
    return best[1:]


def fit_samples(samples: List[Dict[str, float]], cache_bandwidth: float,
                cache_bytes: float = np.inf) -> Dict[str, object]:
    """Fit the cost of layout conversions, then each regime's figures.

    Conversions: ``o_reorder + near / B_reorder + far / B_far``, where
    ``far`` are the bytes beyond ``cache_bytes``, fitted on the measured
    conversion times. A layer: ``max(c', m') + β·min(c', m') +
    o_regime · primitives`` plus its predicted conversion, where ``m' = f/e_m + (m - f)``
    scales only the part ``f`` of the memory time ``m`` beyond the near
    cache (shared level and DRAM) and ``c' = (c - p)/e_c + p/e_post`` prices
    the part ``p`` of the compute time ``c`` spent on fused element-wise
    operations (regimes ``POST_OPS_APART``, else 0) at ``POST_OP_REGIME``'s
    efficiency ``e_post`` (fitted first); each regime's
    (e_c, e_m, β, o) minimises the capped squared log error on a grid, the
    efficiencies then on a finer one within a step of the best. Lone
    conversions (in front of a reshape) carry no regime figures.
    """
    reorder = [s for s in samples if s["reorder_bytes"] > 0 and s["reorder_time"] > 0]
    reo_ov, reo_bw, reo_far_bw = fit_reorders(
        np.array([s["reorder_bytes"] for s in reorder], float),
        np.array([s["reorder_time"] for s in reorder], float), cache_bandwidth, cache_bytes)
    layers = [s for s in samples if s.get("op") != "Reorder"]
    arr = {k: np.array([s[k] for s in layers], float)
           for k in ("compute", "memory", "far", "reorder_bytes", "cross_core_bytes",
                     "image_passes", "split_rows", "chain_vectors", "mac_compute",
                     "post_compute", "time", "primitives")}
    reg = np.array([s["regime"] for s in layers])
    reo = np.where(arr["reorder_bytes"] > 0,
                   conversion_seconds(arr["reorder_bytes"], reo_ov, reo_bw, reo_far_bw,
                                      cache_bytes), 0.0)
    params: Dict[str, Tuple[float, float, float, float, float]] = {}
    pass_cost, row_cost, chains = 0.0, 0.0, 1.0
    # POST_OP_REGIME first: the regimes of POST_OPS_APART price their fused
    # element-wise operations at its compute efficiency.
    for r in sorted(set(reg), key=lambda r: (r != POST_OP_REGIME, r)):
        m = reg == r
        post = arr["post_compute"][m][:, None, None]
        t = arr["time"][m][:, None, None]
        cross = arr["cross_core_bytes"][m][:, None, None]
        # Fixed costs per piece of work: extra images of a per-image kernel
        # (conv_per_image) or split pieces of a depthwise one; a layer has
        # at most one kind.
        image_passes, split_rows = arr["image_passes"][m], arr["split_rows"][m]
        passes = (image_passes + split_rows)[:, None, None]
        vectors = arr["chain_vectors"][m][:, None, None]
        prims = arr["primitives"][m][:, None, None]
        far = arr["far"][m][:, None, None]
        # A fixed cost cannot exceed the time of the regime's fastest layer.
        ov_grid = _OV_GRID[_OV_GRID <= ((arr["time"][m] - reo[m]) / prims[:, 0, 0]).min()]
        ovs = ov_grid if ov_grid.size else _OV_GRID[:1]
        # Only per-image kernels (one regime, conv_per_image) have chains
        # and extra passes to price, only depthwise ones split pieces.
        p_grid = (_PASS_GRID if image_passes.any() else _ROW_GRID if split_rows.any()
                  else _PASS_GRID[:1])
        x_grid = _CROSS_GRID if cross.any() else _CROSS_GRID[:1]

        def search(ch, p_grid, x_grid, ce_grid=_CE_GRID, me_grid=_ME_GRID):
            # Multiply-adds with fewer accumulator chains than the core needs
            # run at that share of the peak.
            slow = np.where(vectors > 0, np.maximum(ch / np.maximum(vectors, 1), 1.0) - 1, 0.0)
            post_time = (post / params[POST_OP_REGIME][0] if POST_OP_REGIME in params
                         else post / ce_grid[None, :, None])
            c = ((arr["compute"][m][:, None, None] - post
                  + slow * arr["mac_compute"][m][:, None, None]) / ce_grid[None, :, None]
                 + post_time)
            mm = far / me_grid[None, None, :] + (arr["memory"][m][:, None, None] - far)
            hi, lo = np.maximum(c, mm), np.minimum(c, mm)
            best = (np.inf, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, ch)
            for p in p_grid:
                for x in x_grid:
                    for b in _OVERLAP_GRID:
                        body = hi + b * lo + reo[m][:, None, None] + x * cross + p * passes
                        for ov in ovs:
                            # Ties (flat directions) resolve to the highest efficiencies.
                            loss = _loss(body + ov * prims, t).sum(axis=0)[::-1, ::-1]
                            i, j = np.unravel_index(np.argmin(loss), loss.shape)
                            if loss[i, j] < best[0] - 1e-12:
                                best = (loss[i, j], ce_grid[::-1][i], me_grid[::-1][j],
                                        b, ov, x, p, ch)
            return best

        best = search(1.0, p_grid, x_grid)
        if vectors.any():
            # The chains are chosen with the other fixed terms held (the full
            # grid for each would take minutes), then the regime refitted.
            x1, p1 = best[5], best[6]   # the cross-core and per-image costs
            ch = min(_CHAIN_GRID, key=lambda ch: search(ch, [p1], [x1])[0])
            if ch != 1.0:
                best = search(ch, p_grid, x_grid)
        # The efficiency grid's steps (9 %) are as wide as the misfits
        # the fit is after: refine both efficiencies within a step of the
        # best, with the overlap and fixed cost searched again (a coarse
        # efficiency comes with a fixed cost that makes up for it).
        _, ce, me, b, ov, x, p, ch = best
        best = search(ch, [p], [x], _refined(ce, _CE_GRID), _refined(me, _ME_GRID))
        _, ce, me, b, ov, x, p, ch = best
        params[r] = (float(ce), float(me), float(b), float(ov), float(x))
        if image_passes.any():
            pass_cost = float(p)
        if split_rows.any():
            row_cost = float(p)
        if vectors.any():
            chains = float(ch)
    return {"compute_efficiency": {r: p[0] for r, p in params.items()},
            "memory_efficiency": {r: p[1] for r, p in params.items()},
            "overlap": {r: p[2] for r, p in params.items()},
            "class_overhead": {r: p[3] for r, p in params.items()},
            "cross_core_cost": {r: p[4] for r, p in params.items()},
            "image_pass_cost": pass_cost, "split_row_cost": row_cost, "fma_chains": chains,
            "reorder_overhead": reo_ov, "reorder_bandwidth": reo_bw,
            "reorder_far_bandwidth": reo_far_bw}


#: Seconds per layer the gap fit tries: none, or 0.05-20 µs.
_GAP_GRID = np.concatenate([[0.0], np.geomspace(0.05e-6, 20e-6, 60)])
#: Exponents the gap fit tries (0: a fixed gap per layer, 1: a share of its time).
_GAP_EXPONENT_GRID = np.linspace(0.0, 1.0, 21)


def fit_whole_runs(layer_seconds: List[np.ndarray], measured: np.ndarray,
                   run_overhead: float = 0.0) -> Tuple[float, float]:
    """(``Device.layer_gap``, ``Device.layer_gap_exponent``) that bring
    whole-model predictions (the layers' times ``layer_seconds``, one array
    per network, summed, + ``run_overhead`` + their gaps) closest to the
    measured whole runs ``measured`` (capped squared log error, like the
    regimes' fit)."""
    measured = np.asarray(measured, float)
    if measured.size == 0:
        return 0.0, 0.0
    layer_seconds = [np.maximum(np.asarray(t, float), 0.0) for t in layer_seconds]
    summed = np.array([t.sum() for t in layer_seconds])
    # Per network and exponent: sum over layers of (t / reference) ** exponent.
    scaled = np.array([[np.sum((t / GAP_REFERENCE) ** e) for t in layer_seconds]
                       for e in _GAP_EXPONENT_GRID])
    pred = (summed[None, None, :] + run_overhead
            + _GAP_GRID[:, None, None] * scaled[None, :, :])
    loss = _loss(pred, measured[None, None, :]).sum(axis=-1)
    # Ties resolve to the smallest terms (both grids start at 0).
    i, j = np.unravel_index(np.argmin(loss), loss.shape)
    return float(_GAP_GRID[i]), float(_GAP_EXPONENT_GRID[j])


#: FLOPs of the peak convolution (256→256 channels, 3×3, 14×14, batch 16;
#: padding taps included).
_PEAK_CONV_FLOPS = 2 * 16 * 256 * 14 * 14 * 256 * 9


def _peak_conv_seconds(threads: int) -> float:
    """Seconds of a large 3×3 convolution (256→256 channels, 14×14, batch 16),
    fastest of 10 runs: oneDNN's direct convolutions can outrun its
    plain-layout matrix multiplication, and the fp32 peak must bound both."""
    from ..graph import Model, Node, ValueInfo
    from ..runtime import Session
    rng = np.random.default_rng(0)
    w = rng.standard_normal((256, 256, 3, 3)).astype(np.float32) * 0.02
    model = Model([Node("Conv", "conv", ["x", "w"], ["y"], {"pads": [1, 1, 1, 1]})],
                  [ValueInfo("x", (16, 256, 14, 14))], [ValueInfo("y", (16, 256, 14, 14))],
                  {"w": w}, name="peak-conv")
    sess = Session(model, batch_size=16, threads=threads)
    return min(r["min_ms"] for r in sess.profile(repeats=10, warmup=2).rows
               if r["node"] == "conv") * 1e-3


def run_overhead(threads: int) -> float:
    """Seconds of an inference beyond its layers: a one-layer model's whole
    run minus the time of its layer (medians of many, like the layers')."""
    from ..graph import Model, Node, ValueInfo
    from ..runtime import Session
    model = Model([Node("Relu", "relu", ["x"], ["y"])], [ValueInfo("x", (1, 16))],
                  [ValueInfo("y", (1, 16))], name="run-overhead")
    sess = Session(model, batch_size=1, threads=threads)
    whole = sess.benchmark(runs=600, warmup=20).median
    layer = next(r["time_ms"] for r in sess.profile(repeats=600).rows if r["node"] == "relu")
    return max(whole - layer * 1e-3, 0.0)


def host_figures(threads: int) -> Dict[str, float]:
    """One measurement of this machine's peaks (FLOP/s), bandwidths (bytes/s)
    and fixed costs (seconds) with oneDNN micro-benchmarks."""
    # Best of two sizes: with only a few repeats of one size, a moment of
    # contention or a slow frequency step sets the peak too low, and every
    # large convolution then looks faster than "peak".
    fp32 = max([2 * n ** 3 / _core.time_matmul(n, n, n, "float32", 10, threads)
                for n in (1024, 2048)] + [_PEAK_CONV_FLOPS / _peak_conv_seconds(threads)])
    int8 = max(2 * n ** 3 / _core.time_matmul(n, n, n, "int8", 10, threads)
               for n in (1024, 2048))
    # A copy reads the source, and reads then writes back the destination
    # (write-allocate): 3 transfers per byte, writes costing two reads.
    dram_copy = _core.time_copy(256 * _MB, 5, threads)
    dram = 3 * 256 * _MB / dram_copy
    cache = _cache_bytes(threads)
    cache_bw = cache_copy_bandwidth(cache, threads)
    # Reads alone are no slower than a copy's reads and writes; a slope made
    # noisy by one slow repeat is capped at ten times the copy's rate.
    read_bw = float(np.clip(cache_read_bandwidth(cache, threads), cache_bw, 10 * cache_bw))
    return {"fp32": fp32, "int8": int8, "dram": dram, "cache_bw": max(cache_bw, dram),
            "cache_read_bw": max(read_bw, dram),
            **shared_cache_figures(threads, cache, 2 * 256 * _MB / dram_copy),
            "overhead": _core.time_tiny_primitive(20, threads),
            "run_overhead": run_overhead(threads)}


#: Figures of :func:`host_figures` that are throughputs of the cores and
#: their caches: a neighbour's load only ever lowers them, so the best of the
#: spread measurements is the machine's. DRAM bandwidth is shared with the
#: other tenants and moves both ways (on a 2-vCPU EPYC VM: 65-67 GB/s in four
#: of five measurements, 123 GB/s in one), so it keeps its median, like the
#: fixed costs and the layers' times.
_THROUGHPUTS = ("fp32", "int8", "cache_bw", "cache_read_bw", "shared_bw")


def combine_figures(runs: List[Dict[str, float]]) -> Dict[str, float]:
    """Several :func:`host_figures` measurements made minutes apart, as one."""
    return {k: float(max(r[k] for r in runs) if k in _THROUGHPUTS
                     else np.median([r[k] for r in runs])) for k in runs[0]}


def measure_host(threads: int, progress: bool = False, between_passes=None,
                 keep: Optional[Dict[str, object]] = None) -> Device:
    """The host's Device (see :meth:`Device.from_host`); ``between_passes``
    is called before each calibration pass, after its micro-benchmarks
    (``bench/cost_fidelity.py`` interleaves its validation passes there, so
    fit and validation see the same spells of the machine's speed). A
    ``keep`` dict receives the measurements, ``runs`` and ``times``, that
    :func:`fit_host` fits on, so the fit can be repeated later."""
    from tqdm.auto import tqdm

    steps = tqdm(total=_CALIBRATION_PASSES * (1 + len(CALIBRATION_MODELS)),
                 desc="measuring host", disable=not progress)
    # The micro-benchmarks take seconds, so one slow spell of a shared
    # machine (seen: cache bandwidth at 40 % of its usual figure) would skew
    # every prediction; they are repeated before each calibration pass.
    runs: List[Dict[str, float]] = []

    def micro_benchmarks():
        runs.append(host_figures(threads))
        steps.update()
        if between_passes is not None:
            between_passes()

    # Efficiencies and fixed costs of each regime: fitted on the measured
    # layers of real networks (in their real context: cache state, layouts,
    # fused post-ops), not on synthetic single layers.
    times = calibration_times(threads, _CALIBRATION_PASSES, steps, micro_benchmarks)
    steps.close()
    if keep is not None:
        keep.update(runs=runs, times=times)
    return fit_host(runs, times, threads)


def fit_host(runs: List[Dict[str, float]],
             times: Dict[Tuple[str, int], Dict[str, Tuple[float, float]]],
             threads: int) -> Device:
    """The host's Device from its micro-benchmark ``runs``
    (:func:`host_figures`) and the calibration networks' measured ``times``
    (:func:`calibration_times`): the measuring and the fitting apart, so a
    fit can be repeated on kept measurements."""
    f = combine_figures(runs)
    base = Device(
        name="host", peak_flops={"fp32": f["fp32"], "int8": f["int8"]},
        dram_bandwidth=f["dram"], cache_bytes=_cache_bytes(threads),
        cache_bandwidth=f["cache_bw"], overhead=f["overhead"],
        # Older kept measurements have no read bandwidth: the copy rate.
        cache_read_bandwidth=f.get("cache_read_bw"),
        # The shared level's capacity keeps its median, like a fixed cost:
        # a neighbour's load can move it either way.
        shared_cache_bytes=f["shared_bytes"],
        shared_cache_bandwidth=(min(max(f["shared_bw"], f["dram"]), f["cache_bw"])
                                if f["shared_bytes"] > 0 else None),
        # Written bytes priced like read ones: with 2 (write-allocate), the
        # large outputs oneDNN's convolutions write at batch 16 were predicted
        # up to 2x too slow (VGG-16's first layer writes 205 MB in 18 ms), and
        # held-out layers within ±20 % fell from 62 % to 56 %.
        run_overhead=f["run_overhead"], dram_write_cost=1.0, threads=threads,
        vector_lanes=_vector_lanes(),
        description=f"{_cpu_model()} ({threads} threads), measured with oneDNN",
        source="lpcv.cost.Device.from_host: oneDNN micro-benchmarks; efficiencies fitted on "
               "the layers of " + ", ".join(sorted({m for m, _ in CALIBRATION_MODELS})))
    models = {name: _calibration_model(name) for name, _ in times}
    samples = [s for (name, batch), layers in times.items()
               for s in layer_samples(models[name], batch, base, layers)]
    device = base.replace(**fit_samples(samples, base.cache_bandwidth, base.cache_bytes))
    # Whole runs take longer than their steps timed alone: the gap is fitted
    # on the measured steps, not on the layers' predictions, whose misses
    # are the regimes' to fit (fitted on the predictions it absorbed their
    # bias: on one run of the fidelity bench 14 of 18 held-out networks came
    # within ±10 %, fitted on the measured steps 17). The runtime's own
    # steps (the output's conversion) count as steps: a fixed cost per
    # network, like the run overhead, that a gap per layer would spread over
    # every layer (left out, 15 of 18).
    runs = [layers for layers in times.values() if WHOLE_RUN in layers]
    gap, exponent = fit_whole_runs(
        [[t[0] for name, t in layers.items() if name != WHOLE_RUN] for layers in runs],
        [layers[WHOLE_RUN][0] for layers in runs], device.run_overhead)
    return device.replace(layer_gap=gap, layer_gap_exponent=exponent)
