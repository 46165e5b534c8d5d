"""Measurement of this machine for :meth:`lpcv.cost.Device.from_host`."""
from __future__ import annotations

import glob
import os
from typing import Dict, List, Tuple

import numpy as np

from .. import _core
from ..graph import Model
from .device import Device, _cpu_model

_MB = 1024 * 1024


def _cache_bytes(threads: int) -> float:
    """Private (level-2) cache of the cores used, from sysfs; 1 MiB per core if unknown.

    The shared last-level cache is left out on purpose: on servers and VMs it
    is shared with other tenants, so a model cannot count on it.
    """
    per_core = 0.0
    for folder in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            level = int(open(os.path.join(folder, "level")).read())
            kind = open(os.path.join(folder, "type")).read().strip()
            text = open(os.path.join(folder, "size")).read().strip().upper()
        except (OSError, ValueError):
            continue
        if level == 2 and kind in ("Unified", "Data"):
            mult = {"K": 1024, "M": _MB, "G": 1024 * _MB}.get(text[-1], 1)
            per_core = float(text.rstrip("KMG")) * mult
    return (per_core or float(_MB)) * threads


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
)


def _calibration_model(spec: str) -> Model:
    """A zoo or reference model from ``name[@resolution[xwidth_mult]]``."""
    from .. import zoo
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


def layer_samples(model: Model, batch: int, base: Device, threads: int,
                  flops_per_repeat: float = 1e10) -> List[Dict[str, float]]:
    """Raw roofline terms and measured time of every layer of ``model``.

    ``compute`` and ``memory`` are the layer's roofline times on ``base`` at
    efficiency 1 (seconds), ``reorder_bytes`` the predicted layout
    conversions, ``time`` the fastest of two :meth:`Session.profile` medians.
    """
    from ..runtime import Session
    from .report import profile

    raw = base.replace(compute_efficiency={}, memory_efficiency={}, overhead=0.0,
                       class_overhead={}, reorder_overhead=0.0)
    rep = profile(model, raw, batch)
    repeats = int(np.clip(flops_per_repeat / max(rep.total.flops, 1), 3, 30))
    sess = Session(model, batch_size=batch, threads=threads)
    runs = [{r["node"]: r["time_ms"] for r in sess.profile(repeats=repeats, warmup=2).rows}
            for _ in range(2)]
    out = []
    for r in rep.rows:
        if r["layer"] not in runs[0]:
            continue
        out.append({"regime": r["regime"], "batch": batch, "compute": r["compute_ms"] * 1e-3,
                    "memory": r["memory_ms"] * 1e-3, "reorder_bytes": r["reorder_bytes"],
                    "time": min(run[r["layer"]] for run in runs) * 1e-3})
    return out


_CE_GRID = np.geomspace(0.02, 1.0, 48)
_ME_GRID = np.geomspace(0.02, 1.0, 48)
# Fixed costs up to 30 µs: a wider range let the fixed cost absorb
# proportional misfits of large layers and over-price tiny ones.
_OV_GRID = np.concatenate([[0.0], np.geomspace(0.5e-6, 30e-6, 30)])


def _loss(pred, t):
    # Squared log error, capped so a few odd layers do not pull the fit.
    return np.minimum(np.log(pred / t) ** 2, np.log(1.5) ** 2)


def fit_samples(samples: List[Dict[str, float]], cache_bandwidth: float,
                overhead: float, rounds: int = 3) -> Dict[str, object]:
    """Fit per-regime efficiencies and fixed costs and the reorder cost.

    Model of a layer: ``max(compute / e_c, memory / e_m) + o_regime`` plus,
    when its input is converted, ``o_reorder + bytes / B_reorder``. Each
    regime's (e_c, e_m, o) minimises the capped squared log error on a grid;
    the reorder pair is fitted on the converted layers; a few rounds
    alternate between the two.
    """
    reo_ov, reo_bw = overhead, cache_bandwidth
    regimes = sorted({s["regime"] for s in samples})
    arr = {k: np.array([s[k] for s in samples], float)
           for k in ("compute", "memory", "reorder_bytes", "time")}
    reg = np.array([s["regime"] for s in samples])
    params: Dict[str, Tuple[float, float, float]] = {}
    bw_grid = np.geomspace(cache_bandwidth / 30, cache_bandwidth * 3, 40)
    ro_grid = _OV_GRID
    for _ in range(rounds):
        reo = np.where(arr["reorder_bytes"] > 0, reo_ov + arr["reorder_bytes"] / reo_bw, 0.0)
        for r in regimes:
            m = reg == r
            c = arr["compute"][m][:, None, None]
            mm = arr["memory"][m][:, None, None]
            t = arr["time"][m][:, None, None]
            body = (np.maximum(c / _CE_GRID[None, :, None], mm / _ME_GRID[None, None, :])
                    + reo[m][:, None, None])
            loss = np.stack([_loss(body + ov, t).sum(axis=0) for ov in _OV_GRID], axis=-1)
            # Ties (flat directions) resolve to the highest efficiencies.
            i, j, k = np.unravel_index(np.argmin(loss[::-1, ::-1, :]), loss.shape)
            params[r] = (float(_CE_GRID[::-1][i]), float(_ME_GRID[::-1][j]), float(_OV_GRID[k]))
        m = arr["reorder_bytes"] > 0
        if m.any():
            ce = np.array([params[r][0] for r in reg[m]])
            me = np.array([params[r][1] for r in reg[m]])
            ov = np.array([params[r][2] for r in reg[m]])
            body = np.maximum(arr["compute"][m] / ce, arr["memory"][m] / me) + ov
            pred = (body[:, None, None] + ro_grid[None, :, None]
                    + arr["reorder_bytes"][m][:, None, None] / bw_grid[None, None, :])
            loss = _loss(pred, arr["time"][m][:, None, None]).sum(axis=0)
            i, j = np.unravel_index(np.argmin(loss), loss.shape)
            reo_ov, reo_bw = float(ro_grid[i]), float(bw_grid[j])
    return {"compute_efficiency": {r: p[0] for r, p in params.items()},
            "memory_efficiency": {r: p[1] for r, p in params.items()},
            "class_overhead": {r: p[2] for r, p in params.items()},
            "reorder_overhead": reo_ov, "reorder_bandwidth": reo_bw}


def measure_host(threads: int, progress: bool = False) -> Device:
    from tqdm.auto import tqdm

    steps = tqdm(total=5 + len(CALIBRATION_MODELS), desc="measuring host", disable=not progress)
    n = 1024
    fp32 = 2 * n ** 3 / _core.time_matmul(n, n, n, "float32", 7, threads)
    steps.update()
    int8 = 2 * n ** 3 / _core.time_matmul(n, n, n, "int8", 7, threads)
    steps.update()
    dram = 2 * 256 * _MB / _core.time_copy(256 * _MB, 5, threads)
    steps.update()
    cache = _cache_bytes(threads)
    # Source and destination together fill half the private caches.
    cache_bw = 2 * (cache / 4) / _core.time_copy(int(cache / 4), 50, threads)
    steps.update()
    overhead = _core.time_tiny_primitive(20, threads)
    steps.update()
    base = Device(
        name="host", peak_flops={"fp32": fp32, "int8": int8}, dram_bandwidth=dram,
        cache_bytes=cache, cache_bandwidth=max(cache_bw, dram), overhead=overhead,
        description=f"{_cpu_model()} ({threads} threads), measured with oneDNN",
        source="lpcv.cost.Device.from_host: oneDNN micro-benchmarks; efficiencies fitted on "
               "the layers of " + ", ".join(sorted({m for m, _ in CALIBRATION_MODELS})))
    # Efficiencies and fixed costs of each regime: fitted on the measured
    # layers of real networks (in their real context: cache state, layouts,
    # fused post-ops), not on synthetic single layers.
    samples: List[Dict[str, float]] = []
    for name, batch in CALIBRATION_MODELS:
        samples += layer_samples(_calibration_model(name), batch, base, threads)
        steps.update()
    steps.close()
    fit = fit_samples(samples, base.cache_bandwidth, overhead)
    return base.replace(**fit)
