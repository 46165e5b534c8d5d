#!/usr/bin/env python3
"""Build ``python/lpcv/_data/fmnist_test_sample.npz`` from the Fashion-MNIST files.

The sample is the first ``--n`` (default 2000) images of the official
Fashion-MNIST test split (``t10k-images-idx3-ubyte``) in file order, stored as
raw ``uint8`` pixels of shape ``(n, 28, 28)`` (key ``images``) with their
``uint8`` labels (key ``labels``), in a compressed ``.npz``.

Usage::

    python scripts/make_sample.py                      # Debian files
    python scripts/make_sample.py --root DIR --n 2000 --out python/lpcv/_data/fmnist_test_sample.npz

The source directory defaults to ``$LPCV_FASHION_MNIST`` or
``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
The output is byte-for-byte reproducible (fixed zip timestamps).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import sys
import types
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


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


def write_npz(path: Path, arrays: dict) -> None:
    """Write a compressed .npz with fixed timestamps (reproducible bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="Fashion-MNIST directory")
    parser.add_argument("--n", type=int, default=2000, help="number of test images")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "python" / "lpcv" / "_data" / "fmnist_test_sample.npz",
    )
    args = parser.parse_args(argv)
    data = import_lpcv_data()
    images, labels = data.load_fashion_mnist("test", root=args.root, normalize=False)
    if not 1 <= args.n <= images.shape[0]:
        parser.error(f"--n must be in 1..{images.shape[0]}")
    images = images[: args.n, 0].astype(np.uint8)
    labels = labels[: args.n].astype(np.uint8)
    write_npz(args.out, {"images": images, "labels": labels})
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    counts = np.bincount(labels, minlength=10).tolist()
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, sha256 {digest})")
    print(f"images {images.shape} {images.dtype}, labels per class {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
