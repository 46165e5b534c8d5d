#!/usr/bin/env python3
"""Train lpcv's reference Fashion-MNIST models and export them to ONNX.

Four networks are trained on the full 60,000-image training split, exported
with ``torch.onnx.export(dynamo=False, opset_version=13)`` (input ``input`` of
shape ``(N, 1, 28, 28)``, float32 in ``[0, 1]``; output ``logits`` ``(N, 10)``;
BatchNormalization kept as separate nodes), then each exported file is checked
with ``onnx.checker`` and evaluated with onnxruntime on the full 10,000-image
test split and on the 2000-image sample bundled with lpcv. Results go to
``model_card.json`` in the output directory (merged with existing entries when
only a subset of models is trained).

PyTorch is needed only here; it is not a dependency of lpcv.

Usage::

    python scripts/train_reference.py                       # all four, 1 thread
    python scripts/train_reference.py --models fmnist-lenet5 --epochs 3
    python scripts/train_reference.py --bench               # time one epoch each

Data comes from ``lpcv.data.load_fashion_mnist`` (Debian package
``dataset-fashion-mnist`` or ``--root``).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import json
import platform
import shlex
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "python" / "lpcv" / "_reference"
OPSET = 13


def import_lpcv_data():
    """Import ``lpcv.data`` from the installed package or the source tree.

    Falls back to the source tree without running ``lpcv/__init__.py`` (which
    may need the compiled core), so this script works from a bare checkout.
    """
    try:
        return importlib.import_module("lpcv.data")
    except ImportError:
        for key in [k for k in sys.modules if k == "lpcv" or k.startswith("lpcv.")]:
            del sys.modules[key]
        pkg = types.ModuleType("lpcv")
        pkg.__path__ = [str(REPO / "python" / "lpcv")]
        sys.modules["lpcv"] = pkg
        return importlib.import_module("lpcv.data")


# --------------------------------------------------------------------------- models
import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class LeNet5(nn.Module):
    """LeNet-5 (ReLU, max-pool): conv5x5(6,pad 2)-pool-conv5x5(16)-pool-120-84-10."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNet300(nn.Module):
    """LeNet-300-100 MLP: Flatten-784-300-100-10 with ReLU."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 300), nn.ReLU(),
            nn.Linear(300, 100), nn.ReLU(),
            nn.Linear(100, 10),
        )

    def forward(self, x):
        return self.net(x)


def conv_bn(cin, cout, k, stride=1, groups=1, act=None):
    layers = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand-BN-ReLU6, dw3x3-BN-ReLU6, 1x1 project-BN."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            conv_bn(cin, hidden, 1, act=nn.ReLU6),
            conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            conv_bn(hidden, cout, 1),
        )

    def forward(self, x):
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetSmall(nn.Module):
    """A small MobileNetV2-style network for 28x28 grayscale input."""

    # (expand t, out channels c, repeats n, first stride s); the stem has stride 2
    CONFIG = [(2, 16, 1, 1), (3, 24, 2, 1), (4, 48, 3, 2), (4, 96, 1, 1)]
    STEM = 16
    LAST = 192

    def __init__(self, dropout=0.2):
        super().__init__()
        layers = [conv_bn(1, self.STEM, 3, stride=2, act=nn.ReLU6)]
        cin = self.STEM
        for t, c, n, s in self.CONFIG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, self.LAST, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(self.LAST, 10)
        )

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN (+ shortcut), ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNetSmall(nn.Module):
    """A small ResNet: stem conv3x3, three stages of basic blocks, GAP, linear."""

    WIDTHS = (16, 32, 64)
    DEPTHS = (1, 2, 2)

    def __init__(self):
        super().__init__()
        w0 = self.WIDTHS[0]
        self.stem = nn.Sequential(
            nn.Conv2d(1, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU()
        )
        blocks = []
        cin = w0
        for i, (w, d) in enumerate(zip(self.WIDTHS, self.DEPTHS)):
            for j in range(d):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(cin, w, stride))
                cin = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


# Training recipes. lr schedule: linear warm-up for `warmup` epochs, then cosine
# to zero. Augmentation: "crop" = random crop 28x28 from the image zero-padded by
# 2 pixels, "flip" = random horizontal flip (p = 0.5).
MODELS = {
    "fmnist-lenet5": dict(
        cls=LeNet5,
        description="LeNet-5 (ReLU, max-pooling) trained on Fashion-MNIST.",
        architecture=(
            "Conv5x5(1->6, pad 2)-ReLU-MaxPool2 - Conv5x5(6->16)-ReLU-MaxPool2 - "
            "Flatten - FC 400->120-ReLU - FC 120->84-ReLU - FC 84->10"
        ),
        epochs=20, optimizer="Adam", lr=2e-3, weight_decay=0.0, warmup=0,
        batch_size=128, augmentation=["crop", "flip"], label_smoothing=0.0,
    ),
    "fmnist-lenet300": dict(
        cls=LeNet300,
        description="LeNet-300-100 multilayer perceptron trained on Fashion-MNIST.",
        architecture="Flatten - FC 784->300-ReLU - FC 300->100-ReLU - FC 100->10",
        epochs=20, optimizer="Adam", lr=1e-3, weight_decay=0.0, warmup=0,
        batch_size=128, augmentation=["flip"], label_smoothing=0.0,
    ),
    "fmnist-mobilenet": dict(
        cls=MobileNetSmall,
        description="Small MobileNetV2-style network trained on Fashion-MNIST.",
        architecture=(
            "Conv3x3(1->16, stride 2)-BN-ReLU6 -> 14x14; inverted residual "
            "blocks (1x1 expand-BN-ReLU6, depthwise 3x3-BN-ReLU6, 1x1 project-BN, "
            "residual add when stride 1 and same channels) with (expand, out, "
            "repeats, first stride) = (2,16,1,1), (3,24,2,1) @14x14, (4,48,3,2), "
            "(4,96,1,1) @7x7; Conv1x1(96->192)-BN-ReLU6 - GlobalAvgPool - "
            "Flatten - Dropout(0.2) - FC 192->10"
        ),
        epochs=10, optimizer="SGD(momentum=0.9, nesterov)", lr=0.1,
        weight_decay=1e-4, warmup=1, batch_size=128, channels_last=True,
        augmentation=["crop", "flip"], label_smoothing=0.0,
    ),
    "fmnist-resnet": dict(
        cls=ResNetSmall,
        description="Small ResNet (basic blocks) trained on Fashion-MNIST.",
        architecture=(
            "Conv3x3(1->16)-BN-ReLU @28x28; basic blocks (conv3x3-BN-ReLU-"
            "conv3x3-BN + identity or 1x1 conv-BN shortcut, ReLU after add): "
            "1x16 @28x28, 2x32 @14x14 (first stride 2), 2x64 @7x7 (first "
            "stride 2); GlobalAvgPool - FC 64->10"
        ),
        epochs=10, optimizer="SGD(momentum=0.9, nesterov)", lr=0.1,
        weight_decay=5e-4, warmup=1, batch_size=128, channels_last=True,
        augmentation=["crop", "flip"], label_smoothing=0.0,
    ),
}


def augment(x: torch.Tensor, aug, gen: torch.Generator) -> torch.Tensor:
    """Batch augmentation on NCHW tensors (random crop with padding 2, flip)."""
    b = x.shape[0]
    if "crop" in aug:
        pad = 2
        xp = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        ar = torch.arange(28)
        rows = (oy[:, None] + ar)[:, :, None]  # b,28,1
        cols = (ox[:, None] + ar)[:, None, :]  # b,1,28
        x = xp[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)
    if "flip" in aug:
        m = torch.rand(b, generator=gen) < 0.5
        x = torch.where(m[:, None, None, None], x.flip(-1), x)
    return x


def make_optimizer(name, params, lr, wd):
    if name.startswith("SGD"):
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    if name == "Adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    raise ValueError(name)


def lr_at(step, total, warmup_steps, base):
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total - warmup_steps)
    return 0.5 * base * (1 + np.cos(np.pi * t))


def train_model(name, cfg, x_train, y_train, epochs, log, max_batches=None):
    torch.manual_seed(0)
    np.random.seed(0)
    gen = torch.Generator().manual_seed(0)
    model = cfg["cls"]()
    cl = cfg.get("channels_last", False)
    if cl:  # faster BatchNorm / conv kernels on CPU; numerics are unchanged
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(cfg["optimizer"], model.parameters(), cfg["lr"], cfg["weight_decay"])
    bs = cfg["batch_size"]
    n = x_train.shape[0]
    steps_per_epoch = (n + bs - 1) // bs
    total = epochs * steps_per_epoch
    warm = int(cfg["warmup"] * steps_per_epoch)
    crit = nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])
    step = 0
    t0 = time.perf_counter()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tl, tc, seen = 0.0, 0, 0
        te = time.perf_counter()
        for bi in range(steps_per_epoch):
            if max_batches is not None and bi >= max_batches:
                break
            idx = perm[bi * bs:(bi + 1) * bs]
            xb = augment(x_train[idx], cfg["augmentation"], gen)
            if cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = y_train[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, warm, cfg["lr"])
            out = model(xb)
            loss = crit(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            tl += loss.item() * len(idx)
            tc += (out.argmax(1) == yb).sum().item()
            seen += len(idx)
        log(f"  {name} epoch {ep + 1}/{epochs}: loss {tl / seen:.4f} "
            f"train acc {tc / seen:.4f} ({time.perf_counter() - te:.1f}s)")
    model = model.to(memory_format=torch.contiguous_format).eval()
    return model, time.perf_counter() - t0


def export_onnx(model, path):
    model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(
        model, (dummy,), str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        training=torch.onnx.TrainingMode.EVAL,
        # The TorchScript exporter fuses BatchNormalization into the preceding
        # Conv as part of constant folding in EVAL mode; lpcv wants the BN nodes
        # (BN folding is one of its own passes), so constant folding is off.
        do_constant_folding=False,
    )


def inline_shared_initializers(path):
    """Replace ``Identity(initializer)`` nodes by a copy of the initializer.

    The TorchScript exporter deduplicates bit-identical parameters and reads
    the copies through Identity nodes. In the ResNet the biases of ``bn2`` and
    of the shortcut BN of a downsampling block feed the same Add, so they get
    identical gradients and stay equal (both start at 0). Giving every
    BatchNormalization its own named parameters keeps the graph plain.
    Returns the number of nodes removed.
    """
    import onnx

    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    keep, new = [], []
    for node in m.graph.node:
        if node.op_type == "Identity" and len(node.input) == 1 and node.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[node.input[0]])
            t.name = node.output[0]
            new.append(t)
        else:
            keep.append(node)
    if new:
        del m.graph.node[:]
        m.graph.node.extend(keep)
        m.graph.initializer.extend(new)
        onnx.save(m, str(path))
    return len(new)


def check_onnx(path, model, x_probe):
    """onnx.checker + op census + compare onnxruntime with PyTorch (if given)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = {}
    for node in m.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    if model is None:
        return ops, None, m
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": x_probe})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x_probe)).numpy()
    return ops, float(np.abs(got - ref).max()), m


def onnx_accuracy(path, x, y, threads, batch=500):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    correct = 0
    for i in range(0, x.shape[0], batch):
        logits = sess.run(["logits"], {"input": x[i:i + batch]})[0]
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
    return correct / x.shape[0], correct


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train lpcv's reference models.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override every model's epoch count")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                        help="subset of models to train")
    parser.add_argument("--threads", type=int, default=1, help="torch/onnxruntime threads")
    parser.add_argument("--root", default=None, help="Fashion-MNIST directory")
    parser.add_argument("--bench", action="store_true",
                        help="only time 100 training batches per model and exit")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="do not train: re-check and re-evaluate the existing ONNX "
                             "files in --out and update their model-card entries")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    data = import_lpcv_data()
    log = lambda s: print(s, flush=True)  # noqa: E731

    if args.evaluate_only:  # no training data needed
        xtr = ytr = np.zeros((0, 1, 28, 28), np.float32)
    else:
        xtr, ytr = data.load_fashion_mnist("train", root=args.root)
    xte, yte = data.load_fashion_mnist("test", root=args.root)
    xs, ys = data.load_sample()
    x_train = torch.from_numpy(xtr)
    y_train = torch.from_numpy(ytr)
    log(f"train {xtr.shape}, test {xte.shape}, sample {xs.shape}; "
        f"torch {torch.__version__}, {args.threads} thread(s)")

    if args.bench:
        for name in args.models:
            cfg = MODELS[name]
            nparams = sum(p.numel() for p in cfg["cls"]().parameters())
            _, sec = train_model(name, cfg, x_train, y_train, 1, lambda s: None, max_batches=100)
            per_epoch = sec / 100 * ((xtr.shape[0] + cfg["batch_size"] - 1) // cfg["batch_size"])
            log(f"{name}: {nparams} params, ~{per_epoch:.0f} s/epoch")
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    card_path = args.out / "model_card.json"
    card = {}
    if card_path.exists():
        card = json.loads(card_path.read_text())
    card.setdefault("models", {})

    import onnx
    import onnxruntime as ort

    cmd_base = "python scripts/train_reference.py"
    if args.evaluate_only:
        for name in args.models:
            path = args.out / f"{name}.onnx"
            entry = card["models"].get(name)
            if entry is None or not path.exists():
                parser.error(f"--evaluate-only: no trained {name} in {args.out}")
            removed = inline_shared_initializers(path)
            ops, _, _ = check_onnx(path, None, None)
            test_acc, test_correct = onnx_accuracy(path, xte, yte, args.threads)
            sample_acc, sample_correct = onnx_accuracy(path, xs, ys, args.threads)
            log(f"   {name}: inlined {removed} Identity node(s); test acc {test_acc:.4f}, "
                f"sample acc {sample_acc:.4f}, ops {ops}")
            entry["sha256"] = sha256(path)
            entry["onnx_ops"] = dict(sorted(ops.items()))
            entry["batchnorm_nodes"] = ops.get("BatchNormalization", 0)
            entry["accuracy"].update(
                test=round(test_acc, 4), test_correct=test_correct,
                sample=round(sample_acc, 4), sample_correct=sample_correct,
                measured_with=f"onnxruntime {ort.__version__} on the exported file",
            )
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        return 0
    for name in args.models:
        cfg = dict(MODELS[name])
        epochs = args.epochs if args.epochs is not None else cfg["epochs"]
        log(f"== {name}: {epochs} epochs")
        model, train_sec = train_model(name, cfg, x_train, y_train, epochs, log)
        nparams = sum(p.numel() for p in model.parameters())
        path = args.out / f"{name}.onnx"
        export_onnx(model, path)
        inline_shared_initializers(path)
        ops, maxdiff, m = check_onnx(path, model, xs[:64])
        test_acc, test_correct = onnx_accuracy(path, xte, yte, args.threads)
        sample_acc, sample_correct = onnx_accuracy(path, xs, ys, args.threads)
        log(f"   {name}: {nparams} params, {train_sec:.0f}s, test acc {test_acc:.4f}, "
            f"sample acc {sample_acc:.4f}, ort-vs-torch max |diff| {maxdiff:.2e}, ops {ops}")
        cmd = f"{cmd_base} --models {name} --threads {args.threads}"
        if args.epochs is not None:
            cmd += f" --epochs {args.epochs}"
        if args.out.resolve() != DEFAULT_OUT.resolve():
            cmd += f" --out {shlex.quote(str(args.out))}"
        card["models"][name] = {
            "name": name,
            "file": path.name,
            "sha256": sha256(path),
            "description": cfg["description"],
            "architecture": cfg["architecture"],
            "params": int(nparams),
            "input": {"name": "input", "shape": ["N", 1, 28, 28], "dtype": "float32",
                      "range": [0.0, 1.0], "layout": "NCHW",
                      "preprocessing": "pixel / 255, no mean/std normalization "
                                       "(lpcv.data.load_fashion_mnist(normalize=True))"},
            "output": {"name": "logits", "shape": ["N", 10], "dtype": "float32"},
            "opset": OPSET,
            "onnx_ops": dict(sorted(ops.items())),
            "batchnorm_nodes": ops.get("BatchNormalization", 0),
            "training": {
                "dataset": "Fashion-MNIST train split (60,000 images)",
                "epochs": epochs,
                "batch_size": cfg["batch_size"],
                "optimizer": cfg["optimizer"],
                "lr": cfg["lr"],
                "lr_schedule": (f"linear warm-up {cfg['warmup']} epoch(s), then cosine to 0, per step"
                                if cfg["warmup"] else "cosine to 0, per step"),
                "weight_decay": cfg["weight_decay"],
                "label_smoothing": cfg["label_smoothing"],
                "augmentation": cfg["augmentation"],
                "augmentation_details": "crop: random 28x28 crop of the image "
                                        "zero-padded by 2; flip: horizontal, p=0.5",
                "seed": 0,
                "torch_version": torch.__version__,
                "threads": args.threads,
                "train_seconds": round(train_sec, 1),
            },
            "accuracy": {
                "test": round(test_acc, 4),
                "test_correct": test_correct,
                "test_images": int(xte.shape[0]),
                "sample": round(sample_acc, 4),
                "sample_correct": sample_correct,
                "sample_images": int(xs.shape[0]),
                "measured_with": f"onnxruntime {ort.__version__} on the exported file",
            },
            "onnx_vs_torch_max_abs_diff": maxdiff,
            "reproduce": cmd,
            "date": datetime.date.today().isoformat(),
        }
        card["generator"] = {
            "script": "scripts/train_reference.py",
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "reproduce_all": f"{cmd_base} --threads 1",
        }
        card["models"] = dict(sorted(card["models"].items()))
        card_path.write_text(json.dumps(card, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
