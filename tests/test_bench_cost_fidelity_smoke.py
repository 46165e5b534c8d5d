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


def test_refit_prices_kept_measurements_with_a_fit_of_this_code():
    # Oracle: the host fit on the kept measurements, made directly, and the
    # cost model's own predictions; the measured times pass through as kept.
    from lpcv.cost import profile
    from lpcv.cost._host import fit_host, layer_times
    bench = _bench_module()
    lenet5 = lpcv.zoo.reference("fmnist-lenet5")
    runs = [{"fp32": 1e11, "int8": 4e11, "dram": 2e10, "cache_bw": 5e10, "shared_bytes": 0.0,
             "shared_bw": 0.0, "overhead": 2e-6, "run_overhead": 5e-6}]
    times = {("fmnist-lenet5", 1): layer_times(lenet5, 1, 1)}
    measured = lpcv.cost.validate(lpcv.zoo.reference("fmnist-lenet300"), "x86-avx512-core",
                                  repeats=2)
    old = {"cpu": "x", "lpcv": "0", "passes": 1,
           "summary": {"measurement_vs_itself": None, "goals": {}},
           "cases": [{"model": "fmnist-lenet300", "batch": 1, "calibration": False,
                      "measured_ms": measured.measured_total * 1e3, "repeats": 2,
                      "rows": [{**r, "measured_passes_ms": [r["measured_ms"]]}
                               for r in measured.rows]}],
           "host_measurements": bench._kept_measurements({"runs": runs, "times": times})}
    new = bench.refit(json.loads(json.dumps(old)), threads=1)
    device = fit_host(runs, times, 1)
    assert new["device"] == json.loads(json.dumps(device.to_dict()))
    (case,) = new["cases"]
    want = profile(lpcv.zoo.reference("fmnist-lenet300"), device, 1)
    assert case["predicted_ms"] == want.total.latency * 1e3
    assert [r["predicted_ms"] for r in case["rows"]] == [r["latency_ms"] for r in want.rows]
    assert [r["measured_ms"] for r in case["rows"]] == [r["measured_ms"] for r in measured.rows]
    assert case["measured_ms"] == measured.measured_total * 1e3
    assert new["summary"]["cases"] == 1
    # A file without kept measurements (made without --refresh) is refused.
    del old["host_measurements"]
    try:
        bench.refit(old, threads=1)
    except SystemExit as e:
        assert "host measurements" in str(e)
    else:
        raise AssertionError("refit accepted a file without host measurements")
