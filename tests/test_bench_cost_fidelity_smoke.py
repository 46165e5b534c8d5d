"""bench/cost_fidelity.py runs end to end and writes the JSON it documents."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import lpcv

BENCH = Path(__file__).resolve().parents[1] / "bench" / "cost_fidelity.py"
# The lpcv this test imported (installed or from the source tree), for the subprocess.
PACKAGE_ROOT = str(Path(lpcv.__file__).resolve().parents[1])


def test_cost_fidelity_bench_combines_passes_by_median_time(tmp_path):
    out = tmp_path / "fid.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    proc = subprocess.run([sys.executable, str(BENCH), "--models", "fmnist-lenet300",
                           "--batches", "1", "4", "--passes", "3", "--device", "x86-avx512-core",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["passes"] == 3 and len(d["cases"]) == 2
    for case in d["cases"]:
        assert len(case["measured_passes_ms"]) == 3
        assert case["measured_ms"] == sorted(case["measured_passes_ms"])[1]   # median of 3
        for row in case["rows"]:
            assert row["measured_ms"] == sorted(row["measured_passes_ms"])[1]
            assert abs(row["error"] - (row["predicted_ms"] / row["measured_ms"] - 1)) < 1e-12
        assert len(case["probe_ms"]) == 3 and all(p > 0 for p in case["probe_ms"])
        assert case["probe_waits"] >= 0
    probe = d["summary"]["speed_probe"]
    assert probe["probes"] >= 6 and probe["spread"] >= 1 and 0 <= probe["slow_share"] <= 1
    agree = d["summary"]["measurement_vs_itself"]
    assert 0 <= agree["layers_within_20pct"] <= 1 and 0 <= agree["models_within_10pct"] <= 1
    assert 0 <= d["summary"]["layers_within_20pct"] <= 1


def _bench_module():
    spec = importlib.util.spec_from_file_location("cost_fidelity_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_speed_gate_waits_out_a_slow_spell_and_gives_up_after_its_retries():
    SpeedGate = _bench_module().SpeedGate
    # Five typical probes, then a slow spell of two probes, then typical again.
    readings = iter([1.0, 1.02, 0.98, 1.0, 1.01, 1.5, 1.4, 1.03, 1.6, 1.6, 1.6, 1.6])
    slept = []
    gate = SpeedGate(lambda: next(readings), slow=1.15, wait=2.0, retries=3, warmup=5,
                     sleep=slept.append)
    assert [gate.settle() for _ in range(5)] == [(p, 0) for p in (1.0, 1.02, 0.98, 1.0, 1.01)]
    assert gate.settle() == (1.03, 2)          # waited through 1.5 and 1.4
    assert slept == [2.0, 2.0]
    assert gate.settle() == (1.6, 3)           # still slow after 3 retries: measured anyway
    assert len(slept) == 5
    s = gate.summary()
    assert s["probes"] == 12 and abs(s["spread"] - 1.6 / 0.98) < 1e-12
    assert abs(s["slow_share"] - 6 / 12) < 1e-12
