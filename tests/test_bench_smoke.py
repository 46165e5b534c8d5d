"""Smoke test of ``bench/runtime.py``: it runs, agrees with onnxruntime, and
writes the documented JSON schema. Not a performance test."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lpcv

BENCH = Path(__file__).resolve().parents[1] / "bench" / "runtime.py"
PACKAGE_ROOT = str(Path(lpcv.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    pytest.importorskip("onnxruntime",
                        reason="onnxruntime is not installed; it is the peer the benchmark "
                               "compares against (pip install onnxruntime)")
    out = tmp_path_factory.mktemp("bench") / "runtime.json"
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + old if old else "")
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--models", "resnet18",
                           "--batches", "1", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(out.read_text()), proc.stdout


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_top_level_schema(result):
    data, _ = result
    assert data["schema"] == "lpcv-bench-runtime/1"
    assert data["quick"] is True
    for key in ("created", "settings", "machine", "versions", "elapsed_s", "cases"):
        assert key in data
    s = data["settings"]
    assert s["threads"] == 2 and s["dtype"] == "float32"
    assert s["onnxruntime"]["intra_op_num_threads"] == 2
    assert s["onnxruntime"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    cpu = data["machine"]["cpu"]
    assert isinstance(cpu["model"], str) and cpu["model"]
    assert set(cpu["flags"]) == {"avx2", "avx512f", "avx512_vnni", "avx_vnni"}
    if Path("/proc/cpuinfo").exists():
        assert all(isinstance(v, bool) for v in cpu["flags"].values())
    v = data["versions"]
    assert v["lpcv"] == lpcv.__version__
    import onnxruntime
    assert v["onnxruntime"] == onnxruntime.__version__
    assert v["numpy"] and v["onnx"]


def test_case_schema_and_consistency(result):
    data, _ = result
    cases = data["cases"]
    # --models resnet18 --batches 1: exactly one case, no reference models.
    assert [(c["model"], c["source"], c["batch"]) for c in cases] == [("resnet18", "zoo", 1)]
    c = cases[0]
    assert c["input_shape"] == [1, 3, 224, 224]
    for engine in ("lpcv", "onnxruntime"):
        e = c[engine]
        for key in ("median_ms", "min_ms", "mean_ms", "max_ms", "setup_s", "throughput_ips"):
            assert _positive(e[key]), (engine, key, e[key])
        assert e["min_ms"] <= e["median_ms"] <= e["max_ms"]
        assert e["runs"] == c["rounds"] * c["runs_per_round"] >= 2
        assert e["throughput_ips"] == pytest.approx(c["batch"] / (e["median_ms"] / 1e3))
    assert c["ratio"] == pytest.approx(c["lpcv"]["median_ms"] / c["onnxruntime"]["median_ms"])
    assert c["speedup"] == pytest.approx(1.0 / c["ratio"])
    assert c["min_ratio"] == pytest.approx(c["lpcv"]["min_ms"] / c["onnxruntime"]["min_ms"])
    chk = c["check"]
    assert chk["agree"] is True
    assert 0 <= chk["max_abs_diff"] <= chk["rtol"] * chk["max_abs_out"]
    assert chk["max_abs_out"] > 0


def test_prints_a_table(result):
    _, stdout = result
    assert "lpcv/ort" in stdout
    assert any(line.startswith("resnet18") for line in stdout.splitlines())


def test_unknown_model_is_rejected(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--models", "nonet",
                           "--out", str(tmp_path / "x.json")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "unknown model 'nonet'" in proc.stderr
    assert not (tmp_path / "x.json").exists()
