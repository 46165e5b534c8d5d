"""bench/cost_fidelity.py runs end to end and writes the JSON it documents."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cost_fidelity_bench_combines_passes_by_median_time(tmp_path):
    out = tmp_path / "fid.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.join(ROOT, "python"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "cost_fidelity.py"),
                    "--models", "fmnist-lenet300", "--batches", "1", "4", "--passes", "3",
                    "--device", "x86-avx512-core", "--out", str(out)],
                   check=True, env=env, capture_output=True, timeout=600)
    d = json.loads(out.read_text())
    assert d["passes"] == 3 and len(d["cases"]) == 2
    for case in d["cases"]:
        assert len(case["measured_passes_ms"]) == 3
        assert case["measured_ms"] == sorted(case["measured_passes_ms"])[1]   # median of 3
        for row in case["rows"]:
            assert row["measured_ms"] == sorted(row["measured_passes_ms"])[1]
            assert abs(row["error"] - (row["predicted_ms"] / row["measured_ms"] - 1)) < 1e-12
    agree = d["summary"]["measurement_vs_itself"]
    assert 0 <= agree["layers_within_20pct"] <= 1 and 0 <= agree["models_within_10pct"] <= 1
    assert 0 <= d["summary"]["layers_within_20pct"] <= 1
