#!/usr/bin/env python
"""Benchmark lpcv's oneDNN runtime against onnxruntime on the same ONNX files.

Both engines run in this one process, on the same ``.onnx`` file (written by
:func:`lpcv.save`), with the same input array and the same number of threads.
Timed runs are interleaved in rounds (lpcv block, onnxruntime block, and the
order alternates every round), so a change in machine load during the run hits
both engines alike; each engine's latency is the median over all its timed
runs. Before timing, the outputs of the two engines are compared.

Cases
-----
* zoo architectures (random weights, 3x224x224 input), default ``resnet18``
  and ``mobilenet_v2`` at batch 1 and 16;
* the trained reference models shipped in ``lpcv/_reference`` (whatever is
  installed), at their natural batch sizes 1 and 256, on the bundled
  Fashion-MNIST sample.

Usage
-----
::

    PYTHONPATH=python python bench/runtime.py                 # full run
    PYTHONPATH=python python bench/runtime.py --quick         # smoke test
    PYTHONPATH=python python bench/runtime.py --models resnet18 --batches 1,16 \\
        --out /tmp/runtime.json

The exit status is 0 when every case's outputs agree, 1 when some disagree
(the JSON is written either way), 2 for bad arguments or a missing peer.
See ``bench/README.md`` for the meaning of every JSON field.
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
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["main", "cpu_info", "run_case", "SCHEMA"]

#: Identifies the layout of the JSON this script writes.
SCHEMA = "lpcv-bench-runtime/1"

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "runtime.json"
DEFAULT_MODELS = ("resnet18", "mobilenet_v2", "reference")
DEFAULT_BATCHES = (1, 16)
REFERENCE_BATCHES = (1, 256)
#: Outputs agree when max |lpcv - ort| <= RTOL * max |ort|.
RTOL = 1e-4
_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni")


# --------------------------------------------------------------------- machine
def cpu_info(path: str = "/proc/cpuinfo", flag_names=None) -> Dict[str, Any]:
    """CPU model name and the vector-ISA flags that matter to oneDNN.

    Parameters
    ----------
    path : str
        The ``cpuinfo`` file (Linux); elsewhere ``platform.processor()`` is used
        and flags are ``None``.
    flag_names : sequence of str, optional
        Flags to report (default: ``avx2``, ``avx512f``, ``avx512_vnni``,
        ``avx_vnni``).

    Returns
    -------
    dict
        ``model``, ``logical_cpus`` and ``flags`` (``avx2``, ``avx512f``,
        ``avx512_vnni``, ``avx_vnni`` mapped to bool).

    Examples
    --------
    >>> info = cpu_info()
    >>> sorted(info)
    ['flags', 'logical_cpus', 'model']
    """
    model, flags = None, None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "flags" and flags is None:
                    flags = set(value.split())
                if model is not None and flags is not None:
                    break
    except OSError:
        pass
    return {
        "model": model or platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "flags": {f: (f in flags) if flags is not None else None for f in flag_names or _FLAGS},
    }


def _versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    import lpcv

    out: Dict[str, Optional[str]] = {"lpcv": lpcv.__version__, "python": platform.python_version()}
    for dist in ("onnxruntime", "onnx", "numpy", "onednn-cpu-gomp"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _threading_env() -> Dict[str, str]:
    """OpenMP / oneDNN / onnxruntime settings from the environment (they change timings)."""
    prefixes = ("OMP_", "GOMP_", "KMP_", "DNNL_", "ONEDNN_", "ORT_", "MKL_")
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(prefixes)}


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ----------------------------------------------------------------------- cases
def _ort_session(path: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _time_block(fn: Callable[[], Any], runs: int) -> List[float]:
    fn()  # untimed: lets the thread pool wake up after the other engine ran
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _stats(times: Sequence[float]) -> Dict[str, Any]:
    ms = sorted(t * 1e3 for t in times)
    return {"median_ms": statistics.median(ms), "min_ms": ms[0], "mean_ms": statistics.fmean(ms),
            "max_ms": ms[-1], "runs": len(ms)}


def run_case(name: str, source: str, model, path: str, x: np.ndarray, *, threads: int,
             rounds: int, warmup: int, round_seconds: float, max_runs_per_round: int
             ) -> Dict[str, Any]:
    """Compare lpcv and onnxruntime on one model file and one input.

    Parameters
    ----------
    name, source : str
        Case label and where the model came from (``"zoo"`` or ``"reference"``).
    model : lpcv.Model
        The model loaded back from ``path`` by :func:`lpcv.load`.
    path : str
        The ONNX file onnxruntime reads.
    x : ndarray
        The input, float32 NCHW; its first axis is the batch.
    threads : int
        Threads for both engines.
    rounds : int
        Interleaved rounds; every round times one block per engine.
    warmup : int
        Runs per engine before the first round; they are not part of the
        results, only used to choose the runs per block.
    round_seconds : float
        Target duration of one block; sets the runs per block (1 at least,
        ``max_runs_per_round`` at most).
    max_runs_per_round : int
        Upper bound on the runs per block.

    Returns
    -------
    dict
        One entry of the JSON ``cases`` list.
    """
    import lpcv

    batch = int(x.shape[0])
    feeds = {model.input_names[0]: x}
    t0 = time.perf_counter()
    sess = lpcv.Session(model, batch_size=batch, threads=threads)
    lpcv_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    ort_sess = _ort_session(path, threads)
    ort_setup = time.perf_counter() - t0
    ort_in = ort_sess.get_inputs()[0].name
    ort_feeds = {ort_in: x}
    out_name = model.output_names[0]

    def run_lpcv():
        return sess.run(feeds)[out_name]

    def run_ort():
        return ort_sess.run([out_name], ort_feeds)[0]

    # Correctness first (these also serve as the first warm-up runs).
    a, b = run_lpcv(), run_ort()
    diff = float(np.max(np.abs(a.astype(np.float64) - b))) if a.shape == b.shape else float("inf")
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    agree = bool(a.shape == b.shape and np.all(np.isfinite(a)) and diff <= RTOL * scale)

    # Warm-up; the median warm-up run of the slower engine sets the block size.
    w_l = _time_block(run_lpcv, warmup) if warmup else [round_seconds]
    w_o = _time_block(run_ort, warmup) if warmup else [round_seconds]
    per_run = max(statistics.median(w_l), statistics.median(w_o), 1e-6)
    runs = int(min(max_runs_per_round, max(1, round_seconds // per_run)))

    lp: List[float] = []
    ox: List[float] = []
    for r in range(rounds):
        if r % 2 == 0:
            lp += _time_block(run_lpcv, runs)
            ox += _time_block(run_ort, runs)
        else:
            ox += _time_block(run_ort, runs)
            lp += _time_block(run_lpcv, runs)
    s_l, s_o = _stats(lp), _stats(ox)
    s_l["setup_s"], s_o["setup_s"] = lpcv_setup, ort_setup
    s_l["throughput_ips"] = batch / (s_l["median_ms"] / 1e3)
    s_o["throughput_ips"] = batch / (s_o["median_ms"] / 1e3)
    ratio = s_l["median_ms"] / s_o["median_ms"]
    return {
        "model": name,
        "source": source,
        "batch": batch,
        "input_shape": list(x.shape),
        "lpcv": s_l,
        "onnxruntime": s_o,
        "ratio": ratio,
        "speedup": 1.0 / ratio,
        "min_ratio": s_l["min_ms"] / s_o["min_ms"],
        "check": {"max_abs_diff": diff, "max_abs_out": scale, "rtol": RTOL, "agree": agree},
        "runs_per_round": runs,
        "rounds": rounds,
    }


# ------------------------------------------------------------------------- CLI
def _csv(kind: Callable[[str], Any]) -> Callable[[str], List[Any]]:
    def parse(text: str) -> List[Any]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        try:
            return [kind(t) for t in items]
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="lpcv Session vs onnxruntime (CPU, fp32) on the same ONNX files.")
    p.add_argument("--models", type=_csv(str), default=list(DEFAULT_MODELS),
                   help="comma-separated zoo architectures (lpcv.zoo.architectures()), "
                        "reference model names (lpcv.zoo.reference_names()) or 'reference' "
                        "for every installed reference model (default: %(default)s)")
    p.add_argument("--batches", type=_csv(_positive), default=list(DEFAULT_BATCHES),
                   help="batch sizes for zoo models (default: 1,16)")
    p.add_argument("--reference-batches", type=_csv(_positive), default=list(REFERENCE_BATCHES),
                   help="batch sizes for reference models (default: 1,256)")
    p.add_argument("--threads", type=_positive, default=2,
                   help="threads for both engines (default: 2)")
    p.add_argument("--rounds", type=_positive, default=None,
                   help="interleaved rounds per case (default: 10, --quick: 2)")
    p.add_argument("--warmup", type=_non_negative, default=None,
                   help="untimed runs per engine before timing (default: 3, --quick: 1)")
    p.add_argument("--round-seconds", type=float, default=None,
                   help="target seconds per timed block (default: 0.3, --quick: 0.05)")
    p.add_argument("--quick", action="store_true",
                   help="few runs: a smoke test of the script, not a measurement")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="JSON output file (default: bench/results/runtime.json)")
    return p


def _expand_models(names: Sequence[str]) -> List[tuple]:
    import lpcv

    archs = lpcv.zoo.architectures()
    refs = lpcv.zoo.reference_names()
    out: List[tuple] = []
    for n in names:
        if n == "reference":
            out += [(r, "reference") for r in refs]
        elif n in archs:
            out.append((n, "zoo"))
        elif n in refs:
            out.append((n, "reference"))
        else:
            raise ValueError(f"unknown model {n!r}; zoo architectures: {', '.join(archs)}; "
                             f"reference models: {', '.join(refs) or '(none installed)'}")
    seen, unique = set(), []
    for item in out:
        if item not in seen:
            seen.add(item)
            unique.append(item)
    return unique


def _table(cases: Sequence[Dict[str, Any]]) -> str:
    head = ("model", "batch", "lpcv ms", "ort ms", "lpcv/ort", "agree")
    rows = [head] + [(c["model"], str(c["batch"]), f"{c['lpcv']['median_ms']:.3f}",
                      f"{c['onnxruntime']['median_ms']:.3f}", f"{c['ratio']:.2f}",
                      "yes" if c["check"]["agree"] else "NO") for c in cases]
    w = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w[i]) if i == 0 else v.rjust(w[i]) for i, v in enumerate(r))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("bench/runtime.py: onnxruntime is not installed (pip install onnxruntime)",
              file=sys.stderr)
        return 2
    import lpcv

    rounds = args.rounds or (2 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    round_seconds = args.round_seconds or (0.05 if args.quick else 0.3)
    max_runs = 3 if args.quick else 50
    try:
        models = _expand_models(args.models)
    except ValueError as e:
        print(f"bench/runtime.py: {e}", file=sys.stderr)
        return 2

    load_before = _loadavg()
    started = time.perf_counter()
    cases: List[Dict[str, Any]] = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="lpcv-bench-") as tmp:
        for name, source in models:
            if source == "zoo":
                built = getattr(lpcv.zoo, name)()
                batches = args.batches
            else:
                built = lpcv.zoo.reference(name)
                batches = args.reference_batches
            path = os.path.join(tmp, f"{name}.onnx")
            lpcv.save(built, path)
            model = lpcv.load(path)
            in_shape = model.inputs[0].shape[1:]
            for batch in batches:
                if source == "reference" and tuple(in_shape) == (1, 28, 28):
                    n = min(batch, lpcv.data.SAMPLE_SIZE)
                    images, _ = lpcv.data.load_sample(n)
                    x = np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])))
                else:
                    x = rng.standard_normal((batch, *in_shape)).astype(np.float32)
                print(f"[bench] {name} batch {batch} ...", file=sys.stderr, flush=True)
                case = run_case(name, source, model, path, x, threads=args.threads,
                                rounds=rounds, warmup=warmup, round_seconds=round_seconds,
                                max_runs_per_round=max_runs)
                cases.append(case)

    result = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "settings": {
            "threads": args.threads,
            "rounds": rounds,
            "warmup": warmup,
            "round_seconds": round_seconds,
            "max_runs_per_round": max_runs,
            "dtype": "float32",
            "timing": "wall clock of one Python call (lpcv Session.run / "
                      "onnxruntime InferenceSession.run), median over interleaved rounds",
            "onnxruntime": {"providers": ["CPUExecutionProvider"], "intra_op_num_threads":
                            args.threads, "inter_op_num_threads": 1,
                            "graph_optimization_level": "ORT_ENABLE_ALL"},
        },
        "machine": {
            "cpu": cpu_info(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
            "environment": _threading_env(),
        },
        "versions": _versions(),
        "elapsed_s": time.perf_counter() - started,
        "cases": cases,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=".runtime-", suffix=".tmp")
    try:
        with os.fdopen(tmp_fd, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        os.replace(tmp_name, out)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise

    cpu = result["machine"]["cpu"]
    flags = ", ".join(k for k, v in cpu["flags"].items() if v) or "none"
    print(f"{cpu['model']} ({cpu['logical_cpus']} logical CPUs; {flags}); "
          f"{args.threads} threads; load average {load_before} -> {result['machine']['loadavg_after']}")
    print(_table(cases))
    print(f"wrote {out}")
    bad = [f"{c['model']}@{c['batch']}" for c in cases if not c["check"]["agree"]]
    if bad:
        print(f"outputs disagree beyond rtol {RTOL}: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
