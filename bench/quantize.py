"""Benchmark of lpcv.quantize kernels against their peers, in the same run.

Cases
-----
``fake_quantize``
    Per-channel int8 symmetric fake-quantization of a float32 tensor with the
    channels on axis 0 (default shape 256 x 262144 = 64 M values), with given
    scales (the kernel alone) in every peer:

    * ``lpcv``        ``lpcv.quantize.fake_quantize(x, axis=0, scale=s)`` (allocates the output)
    * ``lpcv_out``    the same writing into a preallocated array (``out=``)
    * ``lpcv_minmax`` ``fake_quantize(x, axis=0)``: also computes the scales (one more read)
    * ``numpy``       ``np.clip(np.rint(x / s), -128, 127) * s`` (vectorized NumPy)
    * ``numpy_inplace`` the same with ``out=`` buffers (no temporaries)
    * ``torch``       ``torch.fake_quantize_per_channel_affine`` (if torch is installed)

    Achieved bandwidth = (bytes read + bytes written) / median time, compared
    with the machine's streaming bandwidth measured in the same rounds
    (``lpcv._core.time_copy(256 MiB, 1)`` once per round, bandwidth =
    2 * bytes / time; median vs median, and best vs best). A best-of-5
    ``time_copy`` before the cases is recorded too.
``histogram``
    A 2048-bin histogram of 100 M float32 values: ``lpcv.quantize.histogram``
    vs ``numpy.histogram`` on the same range, plus streaming percentile
    calibration (``Calibrator.update`` in 10 M-value chunks) for reference.

``gptq`` (top-level key ``gptq``, not in ``cases``)
    GPTQ of a 4096 x 4096 linear layer (``--gptq-size``; --quick: 256) at 4
    bits, block 128, damp 0.01, per-row symmetric scales, with the Hessian of
    2048 random correlated calibration rows (``--gptq-rows``; fixed seed):

    * ``lpcv``   ``lpcv.quantize.gptq.gptq(w, H, scale)`` (the call only, H precomputed)
    * ``torch``  a straightforward PyTorch CPU implementation of the same
      algorithm (Cholesky, cholesky_inverse, upper Cholesky; column loop in
      Python with in-block rank-1 updates, one matmul per block), float32,
      ``torch.set_num_threads(--threads)``, same H

    The Hessian build is timed apart (``HessianAccumulator("dense").update``
    vs ``2 / n * X^T X`` in torch). Agreement: identical integers on >= 99 %
    of the weights and proxy losses within 1 %. Before timing the bench waits
    (up to ``--wait`` s) for the 1-minute load average to drop below
    ``--max-load`` and records the load it saw.

Peers run in interleaved rounds (the order alternates), and the median and
minimum of the rounds are reported. On a shared machine absolute numbers are
noisy; the ratios are more stable. Output agreement is checked (lpcv vs NumPy
exact; torch within one quantization step on rare ties, since torch multiplies
by 1/scale where lpcv divides like ONNX).

Usage::

    PYTHONPATH=python python bench/quantize.py                 # -> bench/results/quantize.json
    PYTHONPATH=python python bench/quantize.py --quick --out /tmp/q.json

Exit status 0 when every check agrees, 1 otherwise (JSON still written).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
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

SCHEMA = "lpcv-bench-quantize/1"
GOALS = {"fake_quantize_vs_numpy": 10.0, "fake_quantize_vs_torch": 2.0,
         "fake_quantize_bandwidth_fraction": 0.6, "histogram_vs_numpy": 5.0,
         "gptq_vs_torch": 1.0}


def _machine() -> Dict[str, Any]:
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    env = {k: v for k, v in sorted(os.environ.items())
           if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_"))}
    return {"cpu": model or platform.processor(), "logical_cpus": os.cpu_count(),
            "platform": platform.platform(), "environment": env}


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    import lpcv
    out: Dict[str, Optional[str]] = {"lpcv": lpcv.__version__,
                                     "python": platform.python_version()}
    for dist in ("numpy", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _stats(times: Sequence[float]) -> Dict[str, Any]:
    return {"median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "runs": len(times)}


def _interleaved(fns: Dict[str, Callable[[], Any]], rounds: int, warmup: int,
                 probe: Optional[Callable[[], float]] = None):
    """Times each function once per round; the order alternates between rounds.

    ``probe`` (a self-timing function returning seconds, e.g. the streaming
    copy) runs once per round too, so that it sees the same machine load.
    Returns (stats per function, probe results).
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times: Dict[str, List[float]] = {n: [] for n in names}
    probes: List[float] = []
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            gc.collect()
            t0 = time.perf_counter()
            res = fns[n]()
            times[n].append(time.perf_counter() - t0)
            del res
        if probe is not None:
            probes.append(float(probe()))
    return {n: _stats(t) for n, t in times.items()}, probes


def streaming_bandwidth(nbytes: int, repeats: int) -> Dict[str, Any]:
    from lpcv import _core
    secs = float(_core.time_copy(nbytes, repeats))
    return {"bytes": nbytes, "repeats": repeats, "seconds": secs,
            "gbps": 2.0 * nbytes / secs / 1e9,
            "method": "lpcv._core.time_copy (oneDNN reorder copy); bandwidth = 2 * bytes / time"}


def bench_fake_quantize(shape, rounds: int, warmup: int, threads: int,
                        copy_bytes: int) -> Dict[str, Any]:
    from lpcv.quantize import fake_quantize, quantize

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= np.exp(rng.uniform(-2, 2, (shape[0],) + (1,) * (len(shape) - 1))).astype(np.float32)
    _, s, _ = quantize(x, bits=8, axis=0)          # symmetric int8 per-channel scales
    sb = s.reshape((-1,) + (1,) * (len(shape) - 1))
    out = np.empty_like(x)
    np_buf = np.empty_like(x)

    def numpy_expr():
        return np.clip(np.rint(x / sb), -128, 127) * sb

    def numpy_inplace():
        np.divide(x, sb, out=np_buf)
        np.rint(np_buf, out=np_buf)
        np.clip(np_buf, -128, 127, out=np_buf)
        np.multiply(np_buf, sb, out=np_buf)
        return np_buf

    fns: Dict[str, Callable[[], Any]] = {
        "lpcv": lambda: fake_quantize(x, axis=0, scale=s),
        "lpcv_out": lambda: fake_quantize(x, axis=0, scale=s, out=out),
        "lpcv_minmax": lambda: fake_quantize(x, axis=0),
        "numpy": numpy_expr,
        "numpy_inplace": numpy_inplace,
    }
    torch = None
    try:
        import torch  # noqa: F811
    except ImportError:
        pass
    if torch is not None:
        torch.set_num_threads(threads)
        tx = torch.from_numpy(x)
        ts = torch.from_numpy(s.copy())
        tz = torch.zeros(shape[0], dtype=torch.int32)
        fns["torch"] = lambda: torch.fake_quantize_per_channel_affine(tx, ts, tz, 0, -128, 127)

    # correctness first (also a warm-up)
    y = fns["lpcv"]()
    y_np = numpy_expr().astype(np.float32)
    checks: Dict[str, Any] = {"lpcv_equals_numpy": bool(np.array_equal(y, y_np))}
    checks["lpcv_out_equals_lpcv"] = bool(np.array_equal(fns["lpcv_out"](), y))
    checks["lpcv_minmax_equals_lpcv"] = bool(np.array_equal(fns["lpcv_minmax"](), y))
    if torch is not None:
        yt = fns["torch"]().numpy()
        diff = np.abs(yt - y)
        mism = float((diff > 0).mean())
        checks["torch_mismatch_fraction"] = mism
        checks["torch_max_diff_in_steps"] = float((diff / sb).max())
        checks["torch_agrees"] = bool(mism < 1e-4 and (diff / sb).max() <= 1.0001)
        del yt, diff
    del y, y_np
    agree = all(v for k, v in checks.items() if isinstance(v, bool))

    from lpcv import _core
    stats, copies = _interleaved(fns, rounds, warmup,
                                 probe=lambda: _core.time_copy(copy_bytes, 1))
    stream = {"bytes": copy_bytes, "seconds_per_round": copies,
              "median_gbps": 2.0 * copy_bytes / statistics.median(copies) / 1e9,
              "best_gbps": 2.0 * copy_bytes / min(copies) / 1e9,
              "method": "lpcv._core.time_copy(bytes, 1) once per round, interleaved with "
                        "the peers; bandwidth = 2 * bytes / time"}
    nbytes = 2 * x.nbytes  # read x, write y
    for name, st in stats.items():
        st["gbps"] = nbytes / st["median_s"] / 1e9
        st["best_gbps"] = nbytes / st["min_s"] / 1e9
        # median vs median of the streaming copy in the same rounds
        st["fraction_of_streaming"] = st["gbps"] / stream["median_gbps"]
        st["best_fraction_of_streaming"] = st["best_gbps"] / stream["best_gbps"]
    med = {n: st["median_s"] for n, st in stats.items()}
    ratios = {
        "numpy_over_lpcv": med["numpy"] / med["lpcv"],
        "numpy_over_lpcv_out": med["numpy"] / med["lpcv_out"],
        "numpy_inplace_over_lpcv_out": med["numpy_inplace"] / med["lpcv_out"],
    }
    if "torch" in med:
        ratios["torch_over_lpcv"] = med["torch"] / med["lpcv"]
        ratios["torch_over_lpcv_out"] = med["torch"] / med["lpcv_out"]
    goals = {
        "vs_numpy": {"goal": GOALS["fake_quantize_vs_numpy"], "value": ratios["numpy_over_lpcv"],
                     "met": ratios["numpy_over_lpcv"] >= GOALS["fake_quantize_vs_numpy"]},
        "bandwidth_fraction": {
            "goal": GOALS["fake_quantize_bandwidth_fraction"],
            "value": stats["lpcv_out"]["fraction_of_streaming"],
            "met": stats["lpcv_out"]["fraction_of_streaming"]
            >= GOALS["fake_quantize_bandwidth_fraction"]},
    }
    if "torch" in med:
        goals["vs_torch"] = {"goal": GOALS["fake_quantize_vs_torch"],
                             "value": ratios["torch_over_lpcv"],
                             "met": ratios["torch_over_lpcv"] >= GOALS["fake_quantize_vs_torch"]}
    return {"name": "fake_quantize", "shape": list(shape), "dtype": "float32",
            "settings": "int8 symmetric per-channel (axis 0), given scales",
            "bytes_moved": nbytes, "streaming_in_rounds": stream, "peers": stats,
            "ratios": ratios, "goals": goals,
            "check": checks, "agree": agree}


def bench_histogram(n: int, bins: int, rounds: int, warmup: int, chunk: int) -> Dict[str, Any]:
    from lpcv.quantize import Calibrator, histogram

    x = np.random.default_rng(1).standard_normal(n, dtype=np.float32)
    lo, hi = float(x.min()), float(x.max())

    def calib():
        cal = Calibrator(method="percentile", bins=bins)
        for i in range(0, n, chunk):
            cal.update(x[i:i + chunk])
        return cal.compute_range()

    fns = {"lpcv": lambda: histogram(x, bins=bins, range=(lo, hi)),
           "numpy": lambda: np.histogram(x, bins=bins, range=(lo, hi)),
           "lpcv_calibrator_percentile": calib}
    counts, edges = fns["lpcv"]()
    np_counts, _ = fns["numpy"]()
    sub = x[: min(n, 1_000_000)]
    sub_counts, _ = histogram(sub, bins=bins, range=(lo, hi))
    checks = {
        # exact against numpy with lpcv's (float64) edges
        "equals_numpy_same_edges": bool(np.array_equal(
            sub_counts, np.histogram(sub.astype(np.float64), bins=edges)[0])),
        "total_equal": int(counts.sum()) == int(np_counts.sum()) == n,
        # numpy.histogram(float32, range) uses float32 edges: differences only at edges
        "max_abs_diff_vs_numpy_float32_edges": int(np.abs(counts - np_counts).max()),
    }
    agree = checks["equals_numpy_same_edges"] and checks["total_equal"]
    stats, _ = _interleaved(fns, rounds, warmup)
    for st in stats.values():
        st["values_per_s"] = n / st["median_s"]
    ratio = stats["numpy"]["median_s"] / stats["lpcv"]["median_s"]
    return {"name": "histogram", "n": n, "bins": bins, "range": [lo, hi],
            "calibrator_chunk": chunk, "peers": stats,
            "ratios": {"numpy_over_lpcv": ratio},
            "goals": {"vs_numpy": {"goal": GOALS["histogram_vs_numpy"], "value": ratio,
                                   "met": ratio >= GOALS["histogram_vs_numpy"]}},
            "check": checks, "agree": bool(agree)}


def _wait_for_quiet(max_load: float, timeout_s: float) -> Dict[str, Any]:
    """Waits until the 1-minute load average is below ``max_load`` (or the timeout)."""
    t0 = time.perf_counter()
    seen = _loadavg()
    while seen is not None and seen[0] >= max_load and time.perf_counter() - t0 < timeout_s:
        time.sleep(10)
        seen = _loadavg()
    return {"max_load": max_load, "waited_s": round(time.perf_counter() - t0, 1),
            "loadavg_at_start": seen, "quiet": seen is None or seen[0] < max_load}


def torch_gptq(torch, W, H, scale, qmin: int, qmax: int, block_size: int = 128,
               damp: float = 0.01):
    """GPTQ written plainly in PyTorch (the paper's Algorithm 1): returns
    (integers as float tensor, proxy loss)."""
    W = W.clone()
    H = H.clone()
    K = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    idx = torch.arange(K)
    H[idx, idx] += damp * torch.mean(torch.diag(H))
    L = torch.linalg.cholesky(H)
    U = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    Q = torch.zeros_like(W)
    loss = torch.zeros((), dtype=torch.float64)
    for i1 in range(0, K, block_size):
        i2 = min(i1 + block_size, K)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i]
            q = torch.clamp(torch.round(w / scale), qmin, qmax)
            Q[:, i1 + i] = q
            err = (w - q * scale) / U1[i, i]
            loss += torch.sum(err.double() ** 2) / 2
            W1[:, i:] -= err.unsqueeze(1) @ U1[i, i:].unsqueeze(0)
            E1[:, i] = err
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return Q, float(loss)


def bench_gptq(size: int, rows: int, rounds: int, threads: int, block: int = 128,
               bits: int = 4) -> Dict[str, Any]:
    from lpcv.layerdata import HessianAccumulator
    from lpcv.quantize.gptq import gptq, reconstruction_error

    rng = np.random.default_rng(2)
    K = M = size
    mix = (rng.standard_normal((K, K), dtype=np.float32) / np.float32(np.sqrt(K))
           + np.eye(K, dtype=np.float32))
    x = rng.standard_normal((rows, K), dtype=np.float32) @ mix  # correlated inputs
    del mix
    w = rng.standard_normal((M, K), dtype=np.float32)
    qmax = 2 ** (bits - 1) - 1
    scale = (np.abs(w).max(axis=1) / qmax).astype(np.float32)

    hess_times: Dict[str, List[float]] = {"lpcv": []}
    acc = HessianAccumulator("dense").update(x[:256])  # warm-up (oneDNN JIT)
    for _ in range(rounds):
        gc.collect()
        t0 = time.perf_counter()
        acc = HessianAccumulator("dense").update(x)
        hess_times["lpcv"].append(time.perf_counter() - t0)
    H = acc.hessian_[0].astype(np.float32)
    fns: Dict[str, Callable[[], Any]] = {"lpcv": lambda: gptq(w, H, scale, bits=bits,
                                                              block_size=block)}
    torch = None
    try:
        import torch  # noqa: F811
    except ImportError:
        pass
    checks: Dict[str, Any] = {}
    q, info = fns["lpcv"]()
    near = np.clip(np.rint(w / scale[:, None]), -qmax - 1, qmax)
    s2 = scale[:, None]
    err_gptq = reconstruction_error(w, q * s2, H)
    err_near = reconstruction_error(w, near * s2, H)
    checks["lpcv_error_below_nearest"] = bool(err_gptq < err_near)
    if torch is not None:
        torch.set_num_threads(threads)
        tx = torch.from_numpy(x)
        hess_times["torch"] = []
        ht = (tx[:256].T @ tx[:256])  # warm-up
        for _ in range(rounds):
            gc.collect()
            t0 = time.perf_counter()
            ht = (tx.T @ tx) * (2.0 / rows)
            hess_times["torch"].append(time.perf_counter() - t0)
        checks["hessian_max_rel_diff_vs_torch"] = float(
            (ht - torch.from_numpy(H)).abs().max() / ht.abs().max())
        tw, th, ts = torch.from_numpy(w), torch.from_numpy(H), torch.from_numpy(scale)
        fns["torch"] = lambda: torch_gptq(torch, tw, th, ts, -qmax - 1, qmax, block)
        qt, loss_t = fns["torch"]()
        same = float(np.mean(qt.numpy().astype(np.int64) == q))
        checks["identical_integers_vs_torch"] = same
        checks["proxy_loss_rel_diff_vs_torch"] = abs(info.loss - loss_t) / loss_t
        checks["torch_agrees"] = bool(same >= 0.99 and abs(info.loss - loss_t) <= 0.01 * loss_t)
    del x
    agree = all(v for k, v in checks.items() if isinstance(v, bool))
    stats, _ = _interleaved(fns, rounds, 0)
    ratios = {}
    goals = {}
    if "torch" in stats:
        ratios["torch_over_lpcv"] = stats["torch"]["median_s"] / stats["lpcv"]["median_s"]
        goals["vs_torch"] = {"goal": GOALS["gptq_vs_torch"], "value": ratios["torch_over_lpcv"],
                             "met": ratios["torch_over_lpcv"] >= GOALS["gptq_vs_torch"]}
    hstats = {n: _stats(t) for n, t in hess_times.items()}
    if "torch" in hstats:
        ratios["hessian_torch_over_lpcv"] = (hstats["torch"]["median_s"]
                                             / hstats["lpcv"]["median_s"])
    return {"name": "gptq", "shape": [M, K], "calibration_rows": rows, "bits": bits,
            "block_size": block, "damp": 0.01,
            "settings": "per-row symmetric scales max|w|/qmax; H = 2/n X^T X precomputed "
                        "(float32) and shared; timing is the gptq call only",
            "peers": stats, "hessian_build": hstats, "ratios": ratios, "goals": goals,
            "quality": {"reconstruction_error_gptq": err_gptq,
                        "reconstruction_error_nearest": err_near,
                        "proxy_loss_lpcv": info.loss},
            "check": checks, "agree": bool(agree)}


def _write_json(out: Path, data: Dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".quantize-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sizes, 2 rounds: checks that everything works, measures nothing")
    p.add_argument("--shape", default=None,
                   help="fake-quantize shape, e.g. 256x262144 (default; --quick: 64x16384)")
    p.add_argument("--hist-n", type=int, default=None,
                   help="histogram values (default 100000000; --quick: 1000000)")
    p.add_argument("--bins", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch threads (lpcv uses OpenMP's)")
    p.add_argument("--gptq-size", type=int, default=None,
                   help="GPTQ layer size M = K (default 4096; --quick: 256; 0 skips GPTQ)")
    p.add_argument("--gptq-rows", type=int, default=None,
                   help="GPTQ calibration rows (default 2048; --quick: 512)")
    p.add_argument("--gptq-rounds", type=int, default=None, help="GPTQ runs (default 5)")
    p.add_argument("--max-load", type=float, default=1.0,
                   help="wait for the 1-minute load average to drop below this before timing")
    p.add_argument("--wait", type=float, default=None,
                   help="longest wait for that, seconds (default 900; --quick: 0)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"
                                        / "quantize.json"))
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    shape_txt = args.shape or ("64x16384" if args.quick else "256x262144")
    try:
        shape = tuple(int(v) for v in shape_txt.lower().split("x"))
        if not shape or min(shape) < 1:
            raise ValueError
    except ValueError:
        print(f"bad --shape {shape_txt!r}", file=sys.stderr)
        return 2
    hist_n = args.hist_n or (1_000_000 if args.quick else 100_000_000)
    rounds = args.rounds or (2 if args.quick else 5)
    if hist_n < 1 or rounds < 1 or args.bins < 2:
        print("--hist-n, --rounds must be >= 1 and --bins >= 2", file=sys.stderr)
        return 2
    gsize = 256 if args.quick and args.gptq_size is None else (
        4096 if args.gptq_size is None else args.gptq_size)
    grows = args.gptq_rows or (512 if args.quick else 2048)
    grounds = args.gptq_rounds or (2 if args.quick else 5)
    if gsize < 0 or grows < 1 or grounds < 1:
        print("--gptq-size must be >= 0, --gptq-rows and --gptq-rounds >= 1", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    quiet = _wait_for_quiet(args.max_load, args.wait if args.wait is not None
                            else (0.0 if args.quick else 900.0))
    load_before = _loadavg()
    copy_bytes = (16 << 20) if args.quick else (256 << 20)
    bw = streaming_bandwidth(copy_bytes, 2 if args.quick else 5)
    cases = [bench_fake_quantize(shape, rounds, args.warmup, args.threads, copy_bytes)]
    gc.collect()
    cases.append(bench_histogram(hist_n, args.bins, rounds, args.warmup,
                                 chunk=max(1, hist_n // 10)))
    gptq_case = None
    if gsize > 0:
        gc.collect()
        gptq_case = bench_gptq(gsize, grows, grounds, args.threads)
    result = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "settings": {"rounds": rounds, "warmup": args.warmup, "torch_threads": args.threads,
                     "omp_max_threads": os.environ.get("OMP_NUM_THREADS"),
                     "timing": "wall clock of one Python call per round; peers interleaved, "
                               "order alternating; median over rounds"},
        "machine": {**_machine(), "loadavg_before": load_before, "loadavg_after": _loadavg(),
                    "wait_for_quiet": quiet},
        "versions": _versions(),
        "streaming_bandwidth": bw,
        "cases": cases,
        "gptq": gptq_case,
        "elapsed_s": time.perf_counter() - t_start,
    }
    _write_json(Path(args.out), result)
    print(f"streaming bandwidth (best of 5 before the cases): {bw['gbps']:.2f} GB/s")
    for c in cases:
        print(f"\n{c['name']}  agree={c['agree']}")
        if "streaming_in_rounds" in c:
            sr = c["streaming_in_rounds"]
            print(f"  streaming copy in the same rounds: median {sr['median_gbps']:.2f} GB/s, "
                  f"best {sr['best_gbps']:.2f} GB/s")
        for name, st in c["peers"].items():
            extra = f"  {st['gbps']:.2f} GB/s ({100 * st['fraction_of_streaming']:.0f}%)" \
                if "gbps" in st else ""
            print(f"  {name:28s} median {1e3 * st['median_s']:9.2f} ms{extra}")
        for k, v in c["ratios"].items():
            print(f"  {k:28s} {v:6.2f}x")
        for k, g in c["goals"].items():
            print(f"  goal {k}: {g['value']:.2f} (goal {g['goal']}) {'met' if g['met'] else 'NOT met'}")
    if gptq_case is not None:
        c = gptq_case
        print(f"\ngptq {c['shape'][0]}x{c['shape'][1]}, {c['calibration_rows']} rows, "
              f"{c['bits']} bits  agree={c['agree']}")
        for name, st in c["peers"].items():
            print(f"  {name:28s} median {st['median_s']:9.3f} s")
        for name, st in c["hessian_build"].items():
            print(f"  hessian {name:20s} median {st['median_s']:9.3f} s")
        for k, v in c["ratios"].items():
            print(f"  {k:28s} {v:6.2f}x")
        for k, g in c["goals"].items():
            print(f"  goal {k}: {g['value']:.2f} (goal {g['goal']}) {'met' if g['met'] else 'NOT met'}")
        qd = c["quality"]
        print(f"  tr(dW H dW^T): gptq {qd['reconstruction_error_gptq']:.4g}, nearest "
              f"{qd['reconstruction_error_nearest']:.4g}")
    print(f"\nwrote {args.out}")
    ok = all(c["agree"] for c in cases) and (gptq_case is None or gptq_case["agree"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
