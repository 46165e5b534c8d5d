"""Tests of the ``lpcv`` command line, run as ``python -m lpcv`` in subprocesses."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lpcv
from lpcv import cli

PACKAGE_ROOT = str(Path(lpcv.__file__).resolve().parents[1])
REFERENCES = lpcv.zoo.reference_names()
needs_reference = pytest.mark.skipif(not REFERENCES, reason="no reference model installed")

ACCURACY = re.compile(r"accuracy on the bundled sample: (\d+\.\d+)% \((\d+)/(\d+) images\)")


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m lpcv ARGS`` with the test process's environment and lpcv."""
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + old if old else "")
    return subprocess.run([sys.executable, "-m", "lpcv", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip("\n").splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lpcv: error: ")
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small valid ONNX file written by lpcv.save."""
    path = tmp_path_factory.mktemp("cli") / "tiny.onnx"
    if REFERENCES:
        model = lpcv.zoo.reference(REFERENCES[0])
    else:  # pragma: no cover - the package ships reference models
        model = lpcv.zoo.squeezenet1_1(num_classes=10, resolution=64)
    lpcv.save(model, path)
    return path, model


# ----------------------------------------------------------------- version
def test_version_subcommand():
    proc = run_cli("version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"lpcv {lpcv.__version__}\n"


def test_version_flag_and_in_process_main(capsys):
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == f"lpcv {lpcv.__version__}\n"
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"lpcv {lpcv.__version__}"


def test_no_subcommand_is_a_usage_error():
    proc = run_cli()
    assert proc.returncode == 2
    assert "usage: lpcv" in proc.stderr
    assert "Traceback" not in proc.stderr


# -------------------------------------------------------------------- demo
@needs_reference
def test_demo_reports_accuracy_and_timing_table():
    proc = run_cli("demo", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    default = cli.DEFAULT_DEMO_MODEL if cli.DEFAULT_DEMO_MODEL in REFERENCES else REFERENCES[0]
    assert f"model: {default} " in out

    m = ACCURACY.search(out)
    assert m, out
    pct, correct, total = float(m.group(1)), int(m.group(2)), int(m.group(3))
    assert total == lpcv.data.SAMPLE_SIZE
    assert abs(pct / 100 - correct / total) < 1e-4
    # Independent oracle: the model card's sample accuracy was measured with
    # onnxruntime on the exported file; lpcv may flip at most a few images.
    card = lpcv.zoo.model_card(default)["accuracy"]
    assert abs(correct / total - card["sample"]) <= 0.003, (correct, card)
    assert f"test accuracy {card['test']:.2%}" in out

    # The per-node timing table: header, ruler and one row per plan step.
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["node", "op"])
    assert "time_ms" in lines[header] and "share" in lines[header]
    assert set(lines[header + 1].replace(" ", "")) == {"-"}
    rows = lines[header + 2:lines.index("", header)]
    assert len(rows) >= 2
    for row in rows:
        float(row.split()[-2])  # time_ms
        assert 0.0 <= float(row.split()[-1]) <= 1.0  # share
    assert re.search(r"latency: \d+\.\d+ ms per batch of 100 = \d+\.\d+ ms per image", out)
    # --no-progress: nothing on stderr, not even a progress bar.
    assert "evaluating" not in proc.stderr
    assert "Traceback" not in proc.stderr


@needs_reference
def test_demo_shows_progress_bar_and_takes_model_and_batch():
    name = REFERENCES[-1]
    proc = run_cli("demo", "--model", name, "--batch", "500", "--repeats", "2")
    assert proc.returncode == 0, proc.stderr
    assert f"model: {name} " in proc.stdout
    assert ACCURACY.search(proc.stdout)
    assert "ms per batch of 500" in proc.stdout
    # tqdm's bar (its final refresh depends on timing, so only its frame is checked)
    assert "evaluating" in proc.stderr and "/2000" in proc.stderr


def test_demo_unknown_model_lists_valid_names():
    proc = run_cli("demo", "--model", "no-such-model", "--no-progress")
    assert_one_line_error(proc, "no-such-model", "valid names")


def test_demo_rejects_bad_batch():
    proc = run_cli("demo", "--batch", "0")
    assert proc.returncode == 2
    assert "positive integer" in proc.stderr
    assert "Traceback" not in proc.stderr


# -------------------------------------------------------------- info / run
def test_info_prints_summary(model_file):
    path, model = model_file
    proc = run_cli("info", str(path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("<lpcv.Model ")
    for n in model.nodes:
        assert n.name in out
    assert f"{len(model.nodes)} nodes, {model.num_parameters():,} parameters" in out
    assert "output shape" in out and "params" in out
    first_out = model.infer_shapes(batch_size=1)[model.nodes[-1].outputs[0]].shape
    assert "x".join(map(str, first_out)) in out


def test_run_prints_output_shapes_and_timing(model_file):
    path, model = model_file
    proc = run_cli("run", str(path), "--batch", "3", "--bench", "--runs", "3")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    shape = model.infer_shapes(batch_size=3)[model.output_names[0]].shape
    assert f"output {model.output_names[0]}: {'x'.join(map(str, shape))} float32" in out
    assert re.search(r"timing: median \d+\.\d+ ms", out), out
    assert "latency per image:" in out


def test_run_without_bench_prints_no_timing(model_file):
    path, _ = model_file
    proc = run_cli("run", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "output " in proc.stdout
    assert "timing" not in proc.stdout


# ------------------------------------------------------------- error paths
@pytest.mark.parametrize("command", ["info", "run"])
def test_missing_file_is_one_line_exit_2(command, tmp_path):
    missing = tmp_path / "missing.onnx"
    proc = run_cli(command, str(missing))
    assert_one_line_error(proc, "missing.onnx", "does not exist")


def _corrupt_files(tmp_path, model_file):
    path, _ = model_file
    good = path.read_bytes()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good[: len(good) // 2])
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    text = tmp_path / "text.onnx"
    text.write_text("this is not a model\n" * 10)
    return {"garbage": garbage, "truncated": truncated, "empty": empty, "text": text}


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty", "text"])
@pytest.mark.parametrize("command", ["info", "run"])
def test_corrupt_file_is_one_line_exit_2(command, kind, tmp_path, model_file):
    bad = _corrupt_files(tmp_path, model_file)[kind]
    proc = run_cli(command, str(bad))
    assert_one_line_error(proc, bad.name)


def test_directory_instead_of_file(tmp_path):
    proc = run_cli("info", str(tmp_path))
    assert_one_line_error(proc)


# ---------------------------------------------------------------- quantize
@needs_reference
def test_quantize_writes_a_qdq_file_onnxruntime_runs(model_file, tmp_path):
    import onnxruntime as ort

    path, model = model_file
    out = tmp_path / "q.onnx"
    calib = tmp_path / "calib.npy"
    np.save(calib, lpcv.data.load_sample(64)[0])
    proc = run_cli("quantize", str(path), str(out), "--calib", str(calib), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "QuantizationReport(W8 per_channel nearest" in proc.stdout
    q = lpcv.load(out)
    assert any(n.op == "QuantizeLinear" for n in q.nodes)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = lpcv.data.load_sample(8)[0]
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape[0] == 8
    # An existing output is not replaced without --overwrite, and bad settings are one line.
    assert_one_line_error(run_cli("quantize", str(path), str(out)), "exists", "--overwrite")
    assert_one_line_error(run_cli("quantize", str(path), str(tmp_path / "o.onnx"), "--config", "w9"),
                          "weights")
    (tmp_path / "bad.npy").write_text("not numpy")
    assert_one_line_error(run_cli("quantize", str(path), str(tmp_path / "o.onnx"), "--calib",
                                  str(tmp_path / "bad.npy")), "bad.npy")
