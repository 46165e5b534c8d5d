"""Measurement of this machine for :meth:`lpcv.cost.Device.from_host`."""
from __future__ import annotations

import glob
import os
import statistics
from typing import Dict, List, Tuple

import numpy as np

from .. import _core
from ..graph import Model, Node, ValueInfo
from .device import OP_CLASSES, Device, _cpu_model

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


def _layer_models() -> List[Tuple[str, Model]]:
    """Single-layer models representative of each op class (batch 1)."""
    rng = np.random.default_rng(0)

    def conv(name, c, m, hw, k, stride=1, group=1, batch=1):
        w = rng.standard_normal((m, c // group, k, k)).astype(np.float32) * 0.05
        node = Node("Conv", name, ["x", "w", "b"], ["y"],
                    {"pads": [k // 2] * 4, "strides": [stride] * 2, "group": group})
        return Model([node], [ValueInfo("x", (batch, c, hw, hw))], [ValueInfo("y", ())],
                     {"w": w, "b": np.zeros(m, np.float32)}, name=name)

    def single(name, op, shape, attrs=None, n_in=1, extra=None):
        ins = [f"x{i}" for i in range(n_in)]
        node = Node(op, name, ins + list(extra or {}), ["y"], attrs or {})
        return Model([node], [ValueInfo(i, shape) for i in ins], [ValueInfo("y", ())],
                     dict(extra or {}), name=name)

    gemm_w = rng.standard_normal((1000, 1024)).astype(np.float32) * 0.05
    return [
        ("conv", conv("conv3x3_64", 64, 64, 56, 3)),
        ("conv", conv("conv3x3_128", 128, 128, 28, 3)),
        ("conv", conv("conv1x1_256_64", 256, 64, 56, 1)),
        ("conv", conv("conv3x3_256", 256, 256, 14, 3)),
        ("depthwise", conv("dw_144_56", 144, 144, 56, 3, group=144)),
        ("depthwise", conv("dw_384_14", 384, 384, 14, 3, group=384)),
        ("depthwise", conv("dw_96_112_s2", 96, 96, 112, 3, stride=2, group=96)),
        ("depthwise", conv("dw_144_56_b8", 144, 144, 56, 3, group=144, batch=8)),
        ("depthwise", conv("dw_576_14_b8", 576, 576, 14, 3, group=576, batch=8)),
        ("conv", conv("conv1x1_96_576_b8", 96, 576, 14, 1, batch=8)),
        ("conv", conv("conv1x1_32_16_112", 32, 16, 112, 1)),
        ("conv", conv("conv3x3_64_b8", 64, 64, 56, 3, batch=8)),
        ("gemm", Model([Node("Gemm", "fc", ["x", "w"], ["y"], {"transB": 1})],
                       [ValueInfo("x", (1, 1024))], [ValueInfo("y", ())], {"w": gemm_w},
                       name="fc")),
        ("gemm", Model([Node("Gemm", "fc_b64", ["x", "w"], ["y"], {"transB": 1})],
                       [ValueInfo("x", (64, 1024))], [ValueInfo("y", ())], {"w": gemm_w},
                       name="fc_b64")),
        ("pool", single("maxpool", "MaxPool", (1, 64, 112, 112),
                        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})),
        ("pool", single("gap", "GlobalAveragePool", (1, 1280, 7, 7))),
        ("pool", single("maxpool_b8", "MaxPool", (8, 64, 112, 112),
                        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})),
        ("pool", single("gap_b8", "GlobalAveragePool", (8, 1280, 7, 7))),
        ("eltwise", single("relu", "Relu", (1, 256, 56, 56))),
        ("eltwise", single("add", "Add", (1, 128, 56, 56), n_in=2)),
        ("eltwise", single("relu_b8", "Relu", (8, 256, 56, 56))),
        ("data", single("concat", "Concat", (1, 128, 28, 28), {"axis": 1}, n_in=2)),
    ]


def measure_host(threads: int, progress: bool = False) -> Device:
    from tqdm.auto import tqdm

    from ..runtime import Session
    from .report import profile

    steps = tqdm(total=6, desc="measuring host", disable=not progress)
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
        source="lpcv.cost.Device.from_host micro-benchmarks")
    # Efficiency of each op class: the (compute, memory) efficiency pair
    # that best explains the measured times of representative layers, in
    # several regimes (cache-resident and DRAM-streaming), by a grid search
    # on the log error of max(compute / e_c, memory / e_m) + overhead.
    samples: Dict[str, List[Tuple[float, float, float]]] = {}
    for cls, model in _layer_models():
        row = profile(model, base).rows[0]
        sess = Session(model, threads=threads)
        measured = min(sum(r["time_ms"] for r in sess.profile(repeats=30, warmup=5).rows
                           if r["node"] != "<output reorder>") for _ in range(3)) * 1e-3
        samples.setdefault(cls, []).append(
            (row["compute_ms"] * 1e-3, row["memory_ms"] * 1e-3, measured))
    steps.update()
    steps.close()
    grid = np.geomspace(0.02, 1.0, 60)
    compute_eff: Dict[str, float] = {}
    memory_eff: Dict[str, float] = {}
    for cls, rows in samples.items():
        c, m, t = (np.array(v)[:, None, None] for v in zip(*rows))
        pred = np.maximum(c / grid[None, :, None], m / grid[None, None, :]) + overhead
        loss = (np.log(pred / t) ** 2).sum(axis=0)
        i, j = np.unravel_index(np.argmin(loss), loss.shape)
        compute_eff[cls], memory_eff[cls] = float(grid[i]), float(grid[j])
    return base.replace(compute_efficiency=compute_eff, memory_efficiency=memory_eff)
