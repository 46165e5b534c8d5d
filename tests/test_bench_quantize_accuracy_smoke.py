"""Smoke test of ``bench/quantize_accuracy.py``: it runs on the full test split
and writes its JSON. Not an accuracy measurement (few configurations)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lpcv

BENCH = Path(__file__).resolve().parents[1] / "bench" / "quantize_accuracy.py"
PACKAGE_ROOT = str(Path(lpcv.__file__).resolve().parents[1])


def test_quantize_accuracy_bench_runs(tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        lpcv.data.load_fashion_mnist("test")
    except lpcv.exceptions.LpcvError as e:
        pytest.skip(f"Fashion-MNIST is not installed ({e})")
    out = tmp_path / "acc.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--models", "fmnist-lenet300",
                           "--configs", "W8A8 per-channel", "--calib", "64", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    rows = data["models"]["fmnist-lenet300"]
    assert [r["config"] for r in rows] == ["float", "W8A8 per-channel"]
    q = rows[1]
    assert abs(q["loss_pp"]) < 1.0 and abs(q["lpcv_vs_ort_literal_pp"]) < 0.2
    assert q["weight_bytes"] < q["float_weight_bytes"] / 3.5
    assert data["calibration_split"] == "train" and data["test_images"] == 2000
