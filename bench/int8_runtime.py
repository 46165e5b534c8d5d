#!/usr/bin/env python
"""Benchmark lpcv's int8 runtime: fp32 lpcv vs int8 lpcv vs onnxruntime int8.

ResNet-18 from :mod:`lpcv.zoo` (seeded random weights; speed does not depend
on them) is quantized to the QDQ format by onnxruntime's ``quantize_static``
(per-channel int8 weights, uint8 activations, BatchNormalization folded
first, a few random calibration batches). Three engines then run in this one
process at the same batch size and thread count:

* ``lpcv_fp32``: :class:`lpcv.Session` on the float model;
* ``lpcv_int8``: :class:`lpcv.Session` (``quantized="int8"``) on the QDQ file;
* ``ort_int8``: onnxruntime (default graph optimizations, which turn the QDQ
  patterns into its int8 kernels) on the same QDQ file.

Timed runs are interleaved in rounds (one block per engine, the order rotating
every round), so load changes on the shared machine hit all engines alike;
each engine's latency is the median over all its timed runs. Before timing
the script waits (up to ``--wait`` seconds) for the 1-minute load average to
drop below ``--max-load`` and records the load before and after.

Usage
-----
::

    PYTHONPATH=python python bench/int8_runtime.py            # full run
    PYTHONPATH=python python bench/int8_runtime.py --quick    # small and fast

Writes ``bench/results/int8_runtime.json`` (or ``--out``). Goals recorded in
the JSON: int8 lpcv at least 2x faster than fp32 lpcv, and no slower than
onnxruntime on the same QDQ file.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

SCHEMA = "lpcv-bench-int8-runtime/1"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "int8_runtime.json"
_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def cpu_info() -> Dict[str, Any]:
    """CPU model name and the ISA flags that decide oneDNN's int8 kernels."""
    from runtime import cpu_info as runtime_cpu_info  # bench/runtime.py, next to this script

    return runtime_cpu_info(flag_names=_FLAGS)


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _wait_for_quiet(max_load: float, wait: float) -> Dict[str, Any]:
    t0 = time.time()
    while True:
        load = _loadavg()
        if load is None or load[0] <= max_load or time.time() - t0 >= wait:
            return {"loadavg": load, "waited_s": round(time.time() - t0, 1),
                    "quiet": load is None or load[0] <= max_load}
        time.sleep(5)


def _versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    import lpcv
    out: Dict[str, Optional[str]] = {"lpcv": lpcv.__version__,
                                     "python": platform.python_version()}
    for dist in ("onnxruntime", "onnx", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _quantize(model, path_float: str, path_qdq: str, batch: int, resolution: int,
              calib_batches: int) -> float:
    """QDQ file by onnxruntime's quantize_static; returns the seconds it took."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    import lpcv
    lpcv.save(lpcv.transforms.fold_batchnorm(model), path_float, overwrite=True)
    rng = np.random.default_rng(0)
    data = [{"input": rng.standard_normal((batch, 3, resolution, resolution)).astype(
        np.float32)} for _ in range(calib_batches)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(data)

        def get_next(self):
            return next(self.it, None)

    t0 = time.perf_counter()
    quantize_static(path_float, path_qdq, Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return time.perf_counter() - t0


def _time_block(fn: Callable[[], Any], runs: int) -> List[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="batch 2, resolution 112, few runs (a smoke run, not a measurement)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--runs", type=int, default=5, help="timed runs per engine per round")
    p.add_argument("--max-load", type=float, default=1.0,
                   help="wait until the 1-minute load average is at most this")
    p.add_argument("--wait", type=float, default=600.0, help="longest wait for a quiet machine")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    resolution = 224
    if args.quick:
        args.batch, args.rounds, args.runs, args.wait, resolution = 2, 2, 2, 0.0, 112
    if min(args.batch, args.threads, args.rounds, args.runs) < 1:
        print("batch, threads, rounds and runs must be >= 1", file=sys.stderr)
        return 2
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime is required (the peer and the quantizer)", file=sys.stderr)
        return 2

    import lpcv
    model = lpcv.zoo.resnet18(resolution=resolution)
    with tempfile.TemporaryDirectory() as d:
        f_path, q_path = os.path.join(d, "resnet18.onnx"), os.path.join(d, "resnet18_qdq.onnx")
        quant_s = _quantize(model, f_path, q_path, min(args.batch, 4), resolution,
                            2 if args.quick else 4)
        qdq = lpcv.load(q_path)
        x = np.random.default_rng(1).standard_normal(
            (args.batch, 3, resolution, resolution)).astype(np.float32)
        fp32 = lpcv.Session(model, batch_size=args.batch, threads=args.threads)
        int8 = lpcv.Session(qdq, batch_size=args.batch, threads=args.threads, quantized="int8")
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        osess = ort.InferenceSession(q_path, so, providers=["CPUExecutionProvider"])

        # Agreement before timing.
        y_fp32 = fp32.run({"input": x})["logits"]
        y_int8 = int8.run({"input": x})["logits"]
        y_ort = osess.run(None, {"input": x})[0]
        y_sim = lpcv.Session(qdq, batch_size=args.batch, quantized="simulate").run(
            {"input": x})["logits"]
        steps = int8.steps().rows
        agreement = {
            "argmax_int8_vs_ort_int8": float(np.mean(y_int8.argmax(1) == y_ort.argmax(1))),
            "argmax_int8_vs_simulate": float(np.mean(y_int8.argmax(1) == y_sim.argmax(1))),
            "argmax_int8_vs_fp32": float(np.mean(y_int8.argmax(1) == y_fp32.argmax(1))),
            "max_abs_int8_vs_simulate": float(np.abs(y_int8 - y_sim).max()),
            "max_abs_int8_vs_ort_int8": float(np.abs(y_int8 - y_ort).max()),
            "max_abs_logit": float(np.abs(y_sim).max()),
        }
        engines = {
            "lpcv_fp32": lambda: fp32.run({"input": x}),
            "lpcv_int8": lambda: int8.run({"input": x}),
            "ort_int8": lambda: osess.run(None, {"input": x}),
        }
        for fn in engines.values():  # warm up
            fn()
            fn()
        quiet = _wait_for_quiet(args.max_load, args.wait)
        times: Dict[str, List[float]] = {k: [] for k in engines}
        names = list(engines)
        t_start = time.time()
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for k in order:
                times[k] += _time_block(engines[k], args.runs)
        wall = time.time() - t_start

    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "schema": SCHEMA,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "model": "resnet18 (lpcv.zoo, random weights, BN folded before quantization)",
        "quantization": "onnxruntime quantize_static, QDQ, per-channel s8 weights, u8 "
                        "activations",
        "quantize_seconds": round(quant_s, 2),
        "batch": args.batch, "resolution": resolution, "threads": args.threads,
        "rounds": args.rounds, "runs_per_round": args.runs,
        "machine": {"cpu": cpu_info(), "loadavg_before": quiet["loadavg"],
                    "waited_for_quiet_s": quiet["waited_s"], "was_quiet": quiet["quiet"],
                    "max_load": args.max_load, "loadavg_after": _loadavg(),
                    "timing_wall_s": round(wall, 1)},
        "versions": _versions(),
        "median_ms": {k: round(v * 1e3, 3) for k, v in med.items()},
        "min_ms": {k: round(min(v) * 1e3, 3) for k, v in times.items()},
        "images_per_s": {k: round(args.batch / v, 1) for k, v in med.items()},
        "ratios": {
            "fp32_over_int8": round(med["lpcv_fp32"] / med["lpcv_int8"], 3),
            "ort_int8_over_lpcv_int8": round(med["ort_int8"] / med["lpcv_int8"], 3),
        },
        "goals": {
            "int8_at_least_2x_fp32": med["lpcv_fp32"] / med["lpcv_int8"] >= 2.0,
            "int8_no_slower_than_ort": med["lpcv_int8"] <= med["ort_int8"],
        },
        "agreement": agreement,
        "int8_plan": {
            "steps": len(steps),
            "int8_primitives": sum("int8" in s["impl"] for s in steps),
            "reorders": sum(s["kind"] == "reorder" for s in steps),
            "simulated_kernels": sorted({s["kind"] for s in steps
                                         if s["kind"].startswith(("quantize", "dequantize"))}),
            "fallbacks": int8.int8_fallbacks,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(json.dumps({k: result[k] for k in ("median_ms", "ratios", "goals", "agreement")},
                     indent=2))
    print(f"load {quiet['loadavg']} -> {result['machine']['loadavg_after']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
