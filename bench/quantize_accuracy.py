"""Accuracy of post-training quantization on the reference models (full test set).

For every shipped reference model and every configuration (method x weight
bits x granularity, CLE, bias correction, mixed precision) this script

* quantizes with :func:`lpcv.quantize.quantize_model`, calibrating on
  ``--calib`` images drawn (seed ``--seed``) from the Fashion-MNIST *training*
  split,
* measures top-1 accuracy on the full 10,000-image *test* split with
  ``lpcv.Session`` running the QDQ model with int8 kernels, and with
  onnxruntime on the exported QDQ file, both with its default optimizations
  (its own int8 kernels and requantization) and with optimizations off (every
  QuantizeLinear/DequantizeLinear executed as written: the file's semantics),
* records the loss against the float model, the weight bytes of the
  quantized layers and the time quantization took.

Usage::

    PYTHONPATH=python python bench/quantize_accuracy.py                 # -> bench/results/quantize_accuracy.json
    PYTHONPATH=python python bench/quantize_accuracy.py --models fmnist-lenet5 --quick

Needs Fashion-MNIST (``apt-get install dataset-fashion-mnist``) and onnxruntime.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

import lpcv
from lpcv.quantize import choose_bits, quantize_model

CONFIGS = [
    # name, kwargs
    ("W8A8 per-channel", dict(config="w8a8")),
    ("W8A8 per-tensor", dict(config="w8a8_per_tensor")),
    ("W8A8 per-tensor min-max", dict(config="w8a8_per_tensor", weight_range="minmax")),
    ("W8A8 per-tensor min-max +CLE", dict(config="w8a8_per_tensor", weight_range="minmax",
                                          equalize=True)),
    ("W8A8 per-tensor min-max +CLE +BC", dict(config="w8a8_per_tensor", weight_range="minmax",
                                              equalize=True, bias_correction="analytic")),
    ("W8A8 per-tensor min-max +CLE +BC(emp)", dict(config="w8a8_per_tensor", weight_range="minmax",
                                                   equalize=True, bias_correction="empirical")),
    ("W4A8 per-tensor min-max +CLE +BC(emp)", dict(config="w4a8_per_tensor", weight_range="minmax",
                                                   equalize=True, bias_correction="empirical")),
    ("W4A8 per-channel nearest", dict(config="w4a8")),
    ("W4A8 per-channel nearest +BC(emp)", dict(config="w4a8", bias_correction="empirical")),
    ("W4A8 per-channel AdaRound", dict(config="w4a8", method="adaround")),
    ("W4A8 per-channel GPTQ", dict(config="w4a8", method="gptq")),
    ("W4A8 per-tensor min-max", dict(config="w4a8_per_tensor", weight_range="minmax")),
    ("W4A8 per-tensor min-max +CLE +BC", dict(config="w4a8_per_tensor", weight_range="minmax",
                                              equalize=True, bias_correction="analytic")),
    ("W3A8 per-channel nearest", dict(config="w3a8")),
    ("W3A8 per-channel AdaRound", dict(config="w3a8", method="adaround")),
    ("W3A8 per-channel GPTQ", dict(config="w3a8", method="gptq")),
]


def evaluate_lpcv(model, x, y, batch=500):
    sess = lpcv.Session(model, batch_size=batch, threads=2)
    name = sess.input_names[0]
    correct = 0
    for i in range(0, len(x), batch):
        out = sess.run({name: x[i:i + batch]})
        correct += int((next(iter(out.values())).argmax(1) == y[i:i + batch]).sum())
    return 100.0 * correct / len(x)


def evaluate_ort(model, x, y, literal=False):
    """onnxruntime on the saved file: its int8 kernels (default) or, with
    ``literal``, every QuantizeLinear/DequantizeLinear as written (no fusion)."""
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.onnx")
        lpcv.save(model, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        if literal:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        preds = np.concatenate([sess.run(None, {name: x[i:i + 1000]})[0].argmax(1)
                                for i in range(0, len(x), 1000)])
    return 100.0 * float((preds == y).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=lpcv.zoo.reference_names())
    ap.add_argument("--calib", type=int, default=512, help="calibration images (train split)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="first 2000 test images, few configs")
    ap.add_argument("--configs", nargs="*", help="substrings selecting configurations")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "quantize_accuracy.json"))
    args = ap.parse_args(argv)

    xt, yt = lpcv.data.load_fashion_mnist("test")
    xtr, _ = lpcv.data.load_fashion_mnist("train")
    rng = np.random.default_rng(args.seed)
    calib = xtr[np.sort(rng.choice(len(xtr), args.calib, replace=False))]
    if args.quick:
        xt, yt = xt[:2000], yt[:2000]
    configs = CONFIGS
    if args.configs:
        configs = [c for c in CONFIGS if any(s.lower() in c[0].lower() for s in args.configs)]
    elif args.quick:
        configs = CONFIGS[:2] + CONFIGS[6:8]
    results = {"test_images": int(len(xt)), "calibration_images": args.calib,
               "calibration_split": "train", "seed": args.seed,
               "cpu": platform.processor() or platform.machine(),
               "load_average": os.getloadavg(), "models": {}}
    for name in args.models:
        m = lpcv.zoo.reference(name)
        fl = evaluate_lpcv(m, xt, yt)
        fl_ort = evaluate_ort(m, xt, yt)
        rows = [{"config": "float", "lpcv_acc": fl, "ort_acc": fl_ort, "loss_pp": 0.0,
                 "weight_bytes": None, "seconds": 0.0}]
        print(f"{name}: float {fl:.2f} (onnxruntime {fl_ort:.2f})", flush=True)
        todo = list(configs)
        if not args.quick and not args.configs:
            todo.append(("mixed W8/W4 per-channel, 60% size", "mixed"))
        for label, kw in todo:
            t0 = time.perf_counter()
            if kw == "mixed":
                res = choose_bits(m, calib, fraction=0.6, progress=False)
                qm, rep = quantize_model(m, calib, "w8a8", layer_bits=res.layer_bits,
                                         progress=False)
            else:
                qm, rep = quantize_model(m, calib, progress=False, **kw)
            secs = time.perf_counter() - t0
            acc = evaluate_lpcv(qm, xt, yt)
            acc_ort = evaluate_ort(qm, xt, yt)
            acc_lit = evaluate_ort(qm, xt, yt, literal=True)
            row = {"config": label, "settings": rep.settings, "lpcv_acc": acc, "ort_acc": acc_ort,
                   "ort_literal_acc": acc_lit,
                   "loss_pp": round(fl - acc, 3), "lpcv_vs_ort_pp": round(acc - acc_ort, 3),
                   "lpcv_vs_ort_literal_pp": round(acc - acc_lit, 3),
                   "weight_bytes": rep.quantized_weight_bytes,
                   "float_weight_bytes": rep.float_weight_bytes,
                   "seconds": round(secs, 2)}
            rows.append(row)
            print(f"  {label:42s} lpcv {acc:6.2f}  ort {acc_ort:6.2f}  ort-literal {acc_lit:6.2f}  "
                  f"loss {fl - acc:+.2f} pp  "
                  f"{rep.quantized_weight_bytes:>9,} B  {secs:6.1f} s", flush=True)
        results["models"][name] = rows
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=str)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
