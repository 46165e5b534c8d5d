"""How well the cost model predicts oneDNN on this machine.

For each model and batch size: per-layer predicted latency (lpcv.cost.profile
with Device.from_host()) against the time lpcv.Session.profile measures for
the same fused layer, and the whole-model prediction against Session.benchmark.
Writes JSON with, per case and overall: the share of layers within ±20 %,
whether the whole model is within ±10 %, Kendall's τ, plus the time
lpcv.cost.profile takes on ResNet-50. Device.from_host() fits its efficiencies
on the layers of other networks (lpcv.cost._host.CALIBRATION_MODELS); cases on
those networks are flagged "calibration" and the summary is also given over
the held-out cases alone. The 1-minute load average before and after is
recorded: timings on a busy machine are meaningless.

Usage: python bench/cost_fidelity.py [--quick] [--out bench/results/cost_fidelity.json]
       [--models resnet18 mobilenet_v2 ...] [--batches 1 16] [--refresh]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import lpcv
from lpcv.cost import Device, kendall_tau, profile, validate
from lpcv.cost._host import CALIBRATION_MODELS


def _summary(cases):
    hits = sum(c["layers_within_20pct"] * c["layers"] for c in cases)
    n = sum(c["layers"] for c in cases)
    pred = [r["predicted_ms"] for c in cases for r in c["rows"]]
    meas = [r["measured_ms"] for c in cases for r in c["rows"]]
    return {
        "cases": len(cases),
        "layers_within_20pct": hits / n if n else None,
        "models_within_10pct": float(np.mean([c["model_within_10pct"] for c in cases]))
        if cases else None,
        "kendall_tau_all_layers": kendall_tau(pred, meas) if len(pred) > 1 else None,
        "kendall_tau_median_per_case": float(np.median([c["kendall_tau"] for c in cases]))
        if cases else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "cost_fidelity.json"))
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 16])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--refresh", action="store_true", help="measure the host again")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)

    load_before = os.getloadavg()
    device = Device.from_host(refresh=args.refresh, threads=args.threads, progress=True)
    names = args.models or (["resnet18", "mobilenet_v2"] if args.quick else
                            lpcv.zoo.architectures() + lpcv.zoo.reference_names())
    calibration = {m.partition("@")[0] for m, _ in CALIBRATION_MODELS}
    cases = []
    for name in names:
        model = (lpcv.zoo.reference(name) if name in lpcv.zoo.reference_names()
                 else getattr(lpcv.zoo, name)())
        for batch in args.batches:
            macs = profile(model, device, batch).total.macs
            repeats = int(np.clip(2e10 / max(macs, 1), 3, 30))
            t0 = time.perf_counter()
            v = validate(model, device, batch_size=batch, repeats=repeats, threads=args.threads)
            cases.append({
                "model": name, "batch": batch, "calibration": name in calibration,
                "layers": len(v.rows),
                "layers_within_20pct": v.layer_share_within,
                "predicted_ms": v.predicted_total * 1e3, "measured_ms": v.measured_total * 1e3,
                "model_error": v.model_error, "model_within_10pct": abs(v.model_error) <= 0.10,
                "kendall_tau": v.kendall_tau, "seconds": time.perf_counter() - t0,
                "rows": v.rows,
            })
            print(f"{name:22s} batch {batch:3d}: {v.summary()}", flush=True)

    resnet50 = lpcv.zoo.resnet50()
    profile(resnet50, device)  # warm caches (imports)
    t0 = time.perf_counter()
    profile(resnet50, device)
    profile_ms = (time.perf_counter() - t0) * 1e3

    summary = {
        **_summary(cases),
        "held_out": _summary([c for c in cases if not c["calibration"]]),
        "profile_resnet50_ms": profile_ms,
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "goals": {"layers_within_20pct": 0.8, "models_within_10pct": 0.9, "kendall_tau": 0.85,
                  "profile_resnet50_ms": 100},
    }
    out = {"summary": summary, "device": device.to_dict(), "cases": cases,
           "cpu": platform.processor() or platform.machine(), "lpcv": lpcv.__version__,
           "python": sys.version.split()[0]}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1, default=float)
    os.replace(tmp, args.out)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
