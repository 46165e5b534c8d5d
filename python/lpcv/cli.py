"""The ``lpcv`` command line: a thin layer of argparse over the library.

Subcommands
-----------
``lpcv demo [--model NAME] [--batch N] [--no-progress]``
    Run a trained reference model on the bundled Fashion-MNIST sample: accuracy
    (next to the model card's full test-set figure), measured time per node and
    latency per image.
``lpcv info MODEL.onnx``
    Nodes, output shapes and parameter counts of an ONNX file.
``lpcv run MODEL.onnx [--batch N] [--bench]``
    Run an ONNX file on random input; ``--bench`` adds timings.
``lpcv quantize MODEL.onnx OUT.onnx [--config w8a8] [--method nearest|adaround|gptq] [--calib X.npy]``
    Post-training quantization to a QDQ ONNX file (runs in lpcv and
    onnxruntime); calibration images from a ``.npy`` file (N, C, H, W), or the
    bundled Fashion-MNIST sample.
``lpcv version``
    The installed version.

Errors in the user's input (a missing or corrupt file, an unsupported op, a bad
option value) print one line ``lpcv: error: ...`` on stderr and exit with
status 2, without a traceback.

Examples
--------
>>> from lpcv.cli import main
>>> main(["version"])  # doctest: +ELLIPSIS
lpcv ...
0
>>> main(["info", "/nonexistent.onnx"])  # the message goes to stderr
2
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ._version import __version__
from .exceptions import LpcvError

__all__ = ["main", "build_parser", "DEFAULT_DEMO_MODEL"]

#: Reference model ``lpcv demo`` runs when it is installed (else the first one).
DEFAULT_DEMO_MODEL = "fmnist-mobilenet"

#: Exit status for errors in the user's input.
EXIT_USAGE = 2

_EXPECTED_ERRORS = (LpcvError, OSError, ValueError, NotImplementedError, RuntimeError)


class _CliError(Exception):
    """An error the CLI reports as one line (exit status 2)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lpcv`` command.

    Returns
    -------
    argparse.ArgumentParser

    Examples
    --------
    >>> args = build_parser().parse_args(["run", "m.onnx", "--batch", "4", "--bench"])
    >>> args.command, args.batch, args.bench
    ('run', 4, True)
    """
    p = argparse.ArgumentParser(
        prog="lpcv", description="Compress, profile and run neural networks for low-power "
                                 "devices.")
    p.add_argument("--version", action="version", version=f"lpcv {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("demo", help="run a trained reference model on the bundled "
                                    "Fashion-MNIST sample: accuracy and per-layer timing")
    d.add_argument("--model", metavar="NAME",
                   help=f"reference model (default: {DEFAULT_DEMO_MODEL} if installed, "
                        "else the first one; see lpcv.zoo.reference_names())")
    d.add_argument("--batch", type=_positive_int, default=100,
                   help="batch size (default: 100)")
    d.add_argument("--threads", type=_positive_int, default=None,
                   help="threads (default: all cores)")
    d.add_argument("--repeats", type=_positive_int, default=10,
                   help="repeats of the per-node timing (default: 10)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")

    i = sub.add_parser("info", help="summary of an ONNX model: nodes, shapes, parameters")
    i.add_argument("model", metavar="MODEL.onnx")
    i.add_argument("--batch", type=_positive_int, default=1,
                   help="batch size for the shapes (default: 1)")

    r = sub.add_parser("run", help="run an ONNX model on random input")
    r.add_argument("model", metavar="MODEL.onnx")
    r.add_argument("--batch", type=_positive_int, default=1, help="batch size (default: 1)")
    r.add_argument("--threads", type=_positive_int, default=None,
                   help="threads (default: all cores)")
    r.add_argument("--bench", action="store_true", help="also time whole-model runs")
    r.add_argument("--runs", type=_positive_int, default=20,
                   help="timed runs with --bench (default: 20)")
    r.add_argument("--seed", type=int, default=0, help="seed of the random input (default: 0)")

    c = sub.add_parser("profile", help="cost per layer on a device: operations, bytes, "
                                       "arithmetic intensity, roofline latency, energy")
    c.add_argument("model", metavar="MODEL.onnx")
    c.add_argument("--device", default="host",
                   help="preset (rpi4, jetson-nano-cpu, jetson-nano-gpu, phone-big-core, "
                        "x86-avx512-core) or 'host' (measured; default)")
    c.add_argument("--batch", type=_positive_int, default=1, help="batch size (default: 1)")
    c.add_argument("--measure", action="store_true",
                   help="also run the model here and compare predicted with measured time "
                        "(host device)")
    c.add_argument("--refresh", action="store_true", help="measure the host again")
    c.add_argument("--markdown", action="store_true", help="print a Markdown table")
    c.add_argument("--top", type=_positive_int, default=None,
                   help="only the N slowest layers")

    q = sub.add_parser("quantize", help="post-training quantization to a QDQ ONNX file")
    q.add_argument("model", metavar="MODEL.onnx")
    q.add_argument("output", metavar="OUT.onnx")
    q.add_argument("--config", default="w8a8",
                   help="w{bits}a{bits}[_per_tensor], or w{bits} for weights only (default: w8a8)")
    q.add_argument("--method", default="nearest", choices=("nearest", "adaround", "gptq"),
                   help="weight rounding (default: nearest)")
    q.add_argument("--calib", metavar="IMAGES.npy", default=None,
                   help="calibration inputs (N, C, H, W) float32; default: the bundled "
                        "Fashion-MNIST sample")
    q.add_argument("--samples", type=_positive_int, default=512,
                   help="calibration samples to use (default: 512)")
    q.add_argument("--equalize", action="store_true", help="cross-layer equalization first")
    q.add_argument("--bias-correction", choices=("empirical", "analytic"), default=None)
    q.add_argument("--overwrite", action="store_true", help="replace OUT.onnx if it exists")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("version", help="print the version")
    return p


# ------------------------------------------------------------------ commands
def _cmd_version(args: argparse.Namespace) -> None:
    print(f"lpcv {__version__}")


def _cmd_info(args: argparse.Namespace) -> None:
    from .onnx_io import load

    model = load(args.model)
    print(repr(model))
    print()
    print(model.summary(batch_size=args.batch))


def _cmd_run(args: argparse.Namespace) -> None:
    from .onnx_io import load
    from .runtime import Session

    model = load(args.model)
    sess = Session(model, batch_size=args.batch, threads=args.threads)
    rng = np.random.default_rng(args.seed)
    feeds = {name: rng.standard_normal(sess.input_shape(name)).astype(np.float32)
             for name in sess.input_names}
    for name, x in feeds.items():
        print(f"input  {name}: {_shape(x.shape)} float32 (random normal, seed {args.seed})")
    outputs = sess.run(feeds)
    for name, y in outputs.items():
        finite = "" if np.all(np.isfinite(y)) else "  (contains NaN/Inf)"
        print(f"output {name}: {_shape(y.shape)} {y.dtype}, min {float(y.min()):.4g}, "
              f"max {float(y.max()):.4g}{finite}")
    if args.bench:
        timing = sess.benchmark(runs=args.runs, feeds=feeds)
        print(f"timing: {timing}")
        print(f"latency per image: {timing.median / args.batch * 1e3:.3f} ms")


def _cmd_profile(args: argparse.Namespace) -> None:
    from ._report import Table
    from .cost import Device, profile, validate
    from .onnx_io import load

    model = load(args.model)
    device = Device.from_host(refresh=args.refresh, progress=True) if args.device == "host" \
        else Device.resolve(args.device)
    rep = profile(model, device, args.batch)
    cols = ["layer", "op_class", "macs", "params", "weight_bytes", "intensity", "bound",
            "latency_ms", "energy_uj", "advice"]
    rows = sorted(rep.rows, key=lambda r: -r["latency_ms"])[:args.top] if args.top else rep.rows
    table = Table(rows, columns=cols, title=rep.title)
    print(table.to_markdown() if args.markdown else table)
    print()
    print(f"total: {rep.total}")
    if args.measure:
        if args.device != "host":
            print("note: --measure runs here, so it compares with this machine, not "
                  f"{args.device}")
        v = validate(model, device, args.batch)
        print(f"measured: {v.summary()}")


def _cmd_quantize(args: argparse.Namespace) -> None:
    from .onnx_io import load, save
    from .quantize import quantize_model

    model = load(args.model)
    if os.path.exists(args.output) and not args.overwrite:
        raise _CliError(f"{args.output} exists (use --overwrite to replace it)")
    if args.calib is None:
        from .data import load_sample
        calib = load_sample(min(args.samples, 2000))[0]
    else:
        try:
            calib = np.load(args.calib, allow_pickle=False)
        except ValueError as e:
            raise _CliError(f"--calib {args.calib}: not a NumPy .npy array ({e})") from None
    qm, rep = quantize_model(model, calib, args.config, method=args.method,
                             equalize=args.equalize, bias_correction=args.bias_correction,
                             max_samples=args.samples, progress=not args.no_progress)
    save(qm, args.output, overwrite=args.overwrite)
    source = args.calib or "the bundled Fashion-MNIST sample"
    print(rep.layers)
    print()
    print(repr(rep))
    print(f"calibrated on {rep.settings['calibration_samples']} samples of {source}")
    print(f"wrote {args.output}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from . import data, zoo
    from ._report import Table
    from .runtime import Session

    names = zoo.reference_names()
    if not names:
        raise _CliError("no reference models are installed (lpcv/_reference is empty)")
    name = args.model or (DEFAULT_DEMO_MODEL if DEFAULT_DEMO_MODEL in names else names[0])
    model = zoo.reference(name)  # ValidationError lists the valid names
    images, labels = data.load_sample()
    sess = Session(model, batch_size=args.batch, threads=args.threads)
    print(f"model: {name} ({len(model.nodes)} nodes, {model.num_parameters():,} parameters)")

    correct = _count_correct(sess, images, labels, args.batch, progress=not args.no_progress)
    n = len(labels)
    print(f"accuracy on the bundled sample: {correct / n:.2%} ({correct}/{n} images)")
    card = _card_accuracy(name)
    if card:
        print(f"model card: {card}")

    batch = min(args.batch, n)
    feeds = {sess.input_names[0]: images[:batch]}
    table = sess.profile(repeats=args.repeats, feeds=feeds)
    shown = Table(table.rows, columns=["node", "op", "impl", "time_ms", "share"],
                  title=table.title)
    print()
    print(shown)
    total_ms = sum(r["time_ms"] for r in table.rows)
    timing = sess.benchmark(runs=max(5, args.repeats), feeds=feeds)
    print()
    print(f"sum of per-node times: {total_ms:.3f} ms per batch of {batch}")
    print(f"latency: {timing.median * 1e3:.3f} ms per batch of {batch} = "
          f"{timing.median / batch * 1e3:.4f} ms per image ({timing.throughput:,.0f} images/s)")


def _count_correct(sess, images: np.ndarray, labels: np.ndarray, batch: int,
                   progress: bool) -> int:
    from tqdm.auto import tqdm

    name, out = sess.input_names[0], sess.output_names[0]
    correct = 0
    with tqdm(total=len(labels), unit="img", desc="evaluating", disable=not progress,
              file=sys.stderr, leave=False) as bar:
        for start in range(0, len(labels), batch):
            logits = sess.run({name: images[start:start + batch]})[out]
            correct += int((logits.argmax(axis=1) == labels[start:start + batch]).sum())
            bar.update(len(logits))
    return correct


def _card_accuracy(name: str) -> Optional[str]:
    from . import zoo

    try:
        acc = zoo.model_card(name).get("accuracy") or {}
    except LpcvError:
        return None
    parts = []
    if "test" in acc:
        images = acc.get("test_images")
        parts.append(f"test accuracy {float(acc['test']):.2%}"
                     + (f" on the full test set ({int(images):,} images)" if images else ""))
    if "sample" in acc:
        parts.append(f"{float(acc['sample']):.2%} on the sample")
    if acc.get("measured_with"):
        parts.append(f"measured with {acc['measured_with']}")
    return ", ".join(parts) or None


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


_COMMANDS: Dict[str, Callable[[argparse.Namespace], None]] = {
    "demo": _cmd_demo, "info": _cmd_info, "run": _cmd_run, "profile": _cmd_profile,
    "quantize": _cmd_quantize, "version": _cmd_version}


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``lpcv`` console script and ``python -m lpcv``.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 for errors in the input (one line on
        stderr), 130 when interrupted.

    Examples
    --------
    >>> main(["version"])  # doctest: +ELLIPSIS
    lpcv ...
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _COMMANDS[args.command](args)
    except BrokenPipeError:  # e.g. ``lpcv info m.onnx | head``: not an error
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the final flush
        except OSError:
            pass
        return 0
    except (_CliError, *_EXPECTED_ERRORS) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"lpcv: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("lpcv: interrupted", file=sys.stderr)
        return 130
    return 0
