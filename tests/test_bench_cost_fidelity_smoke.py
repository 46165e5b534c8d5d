"""bench/cost_fidelity.py runs end to end and writes the JSON it documents."""
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
    agree = d["summary"]["measurement_vs_itself"]
    assert 0 <= agree["layers_within_20pct"] <= 1 and 0 <= agree["models_within_10pct"] <= 1
    assert 0 <= d["summary"]["layers_within_20pct"] <= 1
