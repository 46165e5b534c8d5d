"""Smoke test of ``bench/quantize.py``: it runs on small sizes, its outputs agree
with NumPy (and torch when installed) and it writes the documented JSON schema.
Not a performance test."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lpcv

BENCH = Path(__file__).resolve().parents[1] / "bench" / "quantize.py"
PACKAGE_ROOT = str(Path(lpcv.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quantize.json"
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + old if old else "")
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--shape", "16x4096",
                           "--hist-n", "200000", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(out.read_text()), proc.stdout


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_schema_and_agreement(result):
    data, stdout = result
    assert data["schema"] == "lpcv-bench-quantize/1"
    assert data["quick"] is True
    assert _positive(data["streaming_bandwidth"]["gbps"])
    assert _positive(data["elapsed_s"])
    assert data["versions"]["lpcv"] == lpcv.__version__
    cases = {c["name"]: c for c in data["cases"]}
    assert set(cases) == {"fake_quantize", "histogram"}
    fq = cases["fake_quantize"]
    assert fq["shape"] == [16, 4096] and fq["agree"] is True
    assert fq["check"]["lpcv_equals_numpy"] is True
    for peer in ("lpcv", "lpcv_out", "lpcv_minmax", "numpy", "numpy_inplace"):
        st = fq["peers"][peer]
        assert _positive(st["median_s"]) and _positive(st["gbps"])
        assert st["min_s"] <= st["median_s"] <= st["max_s"]
    assert _positive(fq["ratios"]["numpy_over_lpcv"])
    sr = fq["streaming_in_rounds"]
    assert len(sr["seconds_per_round"]) == data["settings"]["rounds"]
    assert _positive(sr["median_gbps"]) and sr["best_gbps"] >= sr["median_gbps"]
    assert _positive(fq["peers"]["lpcv_out"]["fraction_of_streaming"])
    assert {"vs_numpy", "bandwidth_fraction"} <= set(fq["goals"])
    try:
        import torch  # noqa: F401
        assert fq["check"]["torch_agrees"] is True
        assert _positive(fq["ratios"]["torch_over_lpcv"])
    except ImportError:
        assert "torch" not in fq["peers"]
    h = cases["histogram"]
    assert h["n"] == 200000 and h["bins"] == 2048 and h["agree"] is True
    assert h["check"]["equals_numpy_same_edges"] is True
    assert _positive(h["ratios"]["numpy_over_lpcv"])
    assert "fake_quantize" in stdout and "wrote" in stdout


def test_bad_arguments():
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--shape", "0x5"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
