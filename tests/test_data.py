"""Tests of lpcv.data (IDX reader, Fashion-MNIST loaders, bundled sample) and of
the reference models shipped in lpcv/_reference."""
from __future__ import annotations

import doctest
import gzip
import json
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from lpcv import data
from lpcv.exceptions import (
    DataNotFoundError,
    LpcvError,
    ShapeError,
    ValidationError,
)

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
HAVE_DEBIAN = all(
    os.path.exists(os.path.join(DEBIAN_ROOT, f"{p}-{k}-ubyte.gz"))
    for p in ("train", "t10k")
    for k in ("images-idx3", "labels-idx1")
)
needs_debian = pytest.mark.skipif(
    not HAVE_DEBIAN,
    reason=f"Fashion-MNIST not installed in {DEBIAN_ROOT} "
    "(apt-get install dataset-fashion-mnist)",
)

REFERENCE_DIR = Path(data.__file__).resolve().parent / "_reference"
REFERENCE_MODELS = ("fmnist-lenet5", "fmnist-lenet300", "fmnist-mobilenet", "fmnist-resnet")


# ----------------------------------------------------------------------------- helpers


def reference_decode(path: str, header_len: int, item_shape) -> np.ndarray:
    """Independent IDX decoding for uint8 files: fixed header, raw bytes."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    arr = np.frombuffer(raw, dtype=np.uint8, offset=header_len)
    return arr.reshape((-1,) + tuple(item_shape))


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    """Serialise ``arr`` as IDX with type ``code`` (big-endian payload)."""
    be = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + np.ascontiguousarray(arr, dtype=be).tobytes()


def write(path: Path, payload: bytes, gz: bool = False) -> Path:
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_fake_dataset(root: Path, n: int = 5, gz: bool = True, prefix: str = "t10k"):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    sfx = ".gz" if gz else ""
    write(root / f"{prefix}-images-idx3-ubyte{sfx}", idx_bytes(images, 0x08), gz)
    write(root / f"{prefix}-labels-idx1-ubyte{sfx}", idx_bytes(labels, 0x08), gz)
    return images, labels


# ----------------------------------------------------------------------------- module


def test_public_api():
    assert set(data.__all__) >= {
        "read_idx",
        "load_fashion_mnist",
        "load_sample",
        "CLASS_NAMES",
    }
    for name in data.__all__:
        assert hasattr(data, name)
    assert data.CLASS_NAMES == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )


def test_exception_hierarchy():
    assert issubclass(DataNotFoundError, FileNotFoundError)
    assert issubclass(DataNotFoundError, LpcvError)
    assert issubclass(ShapeError, ValidationError)
    assert issubclass(ValidationError, ValueError)


@needs_debian
def test_doctests():
    res = doctest.testmod(data, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0
    assert res.failed == 0


def test_doctests_without_debian_data(monkeypatch):
    """The examples that do not need the full data set run everywhere."""
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    ran = 0
    for test in finder.find(data):
        if test.name.endswith("load_fashion_mnist"):
            continue
        runner.run(test)
        ran += len(test.examples)
    assert ran > 0
    assert runner.failures == 0


# ----------------------------------------------------------------------------- read_idx: valid files


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "code,dtype",
    [
        (0x08, np.uint8),
        (0x09, np.int8),
        (0x0B, np.int16),
        (0x0C, np.int32),
        (0x0D, np.float32),
        (0x0E, np.float64),
    ],
)
def test_read_idx_roundtrip(tmp_path, gz, code, dtype):
    rng = np.random.default_rng(1)
    arr = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    p = write(tmp_path / "a.idx", idx_bytes(arr, code), gz)
    got = data.read_idx(p)
    assert got.dtype == np.dtype(dtype)  # native byte order
    assert got.dtype.isnative
    assert got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, arr)


def test_read_idx_accepts_str_and_pathlike(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    p = write(tmp_path / "x-idx2-ubyte", idx_bytes(arr, 0x08))
    np.testing.assert_array_equal(data.read_idx(str(p)), arr)
    np.testing.assert_array_equal(data.read_idx(p), arr)


def test_read_idx_empty_dimension(tmp_path):
    arr = np.zeros((0, 28, 28), np.uint8)
    p = write(tmp_path / "empty", idx_bytes(arr, 0x08))
    assert data.read_idx(p).shape == (0, 28, 28)


def test_read_idx_gzip_detected_by_content(tmp_path):
    """A gzipped file without .gz suffix (and vice versa) is still read."""
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    p1 = write(tmp_path / "no-suffix", idx_bytes(arr, 0x08), gz=True)
    p2 = write(tmp_path / "plain.gz", idx_bytes(arr, 0x08), gz=False)
    np.testing.assert_array_equal(data.read_idx(p1), arr)
    np.testing.assert_array_equal(data.read_idx(p2), arr)


# ----------------------------------------------------------------------------- read_idx: bad files


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataNotFoundError, match="not found"):
        data.read_idx(tmp_path / "nope")


def test_read_idx_directory(tmp_path):
    with pytest.raises(ValidationError, match="directory"):
        data.read_idx(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_wrong_magic(tmp_path, gz):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    payload = b"\x01\x02" + idx_bytes(arr, 0x08)[2:]
    p = write(tmp_path / "bad-magic", payload, gz)
    with pytest.raises(ValidationError, match="magic") as ei:
        data.read_idx(p)
    assert str(p) in str(ei.value)
    assert not isinstance(ei.value, ShapeError)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_unknown_dtype_code(tmp_path, gz):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    payload = bytearray(idx_bytes(arr, 0x08))
    payload[2] = 0x0A
    p = write(tmp_path / "bad-code", bytes(payload), gz)
    with pytest.raises(ValidationError, match="dtype code 0x0A") as ei:
        data.read_idx(p)
    assert str(p) in str(ei.value)


def test_read_idx_zero_dimensions(tmp_path):
    p = write(tmp_path / "zero-dims", bytes([0, 0, 8, 0]) + b"\x05")
    with pytest.raises(ValidationError, match="0 dimensions"):
        data.read_idx(p)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("nbytes", [0, 2, 5, 9])
def test_read_idx_truncated_header(tmp_path, gz, nbytes):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    p = write(tmp_path / "short-header", idx_bytes(arr, 0x08)[:nbytes], gz)
    with pytest.raises(ValidationError) as ei:
        data.read_idx(p)
    assert str(p) in str(ei.value)
    assert "truncated" in str(ei.value) or "magic" in str(ei.value)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_payload(tmp_path, gz):
    arr = np.arange(2 * 28 * 28, dtype=np.int64).astype(np.uint8).reshape(2, 28, 28)
    p = write(tmp_path / "trunc-idx3-ubyte", idx_bytes(arr, 0x08)[:-10], gz)
    with pytest.raises(ShapeError, match="truncated|mismatch") as ei:
        data.read_idx(p)
    msg = str(ei.value)
    assert str(p) in msg
    assert "(2, 28, 28)" in msg  # says what the header expected


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_trailing_bytes(tmp_path, gz):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    p = write(tmp_path / "long", idx_bytes(arr, 0x08) + b"\x00\x00", gz)
    with pytest.raises(ShapeError, match="trailing|mismatch") as ei:
        data.read_idx(p)
    assert str(p) in str(ei.value)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_absurd_header_fails_fast(tmp_path, gz):
    """A header declaring ~8e28 bytes must not allocate anything large."""
    head = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1)
    p = write(tmp_path / "huge", head + b"\x00" * 64, gz)
    t0 = time.perf_counter()
    with pytest.raises(ShapeError) as ei:
        data.read_idx(p)
    assert time.perf_counter() - t0 < 5.0
    assert str(p) in str(ei.value)


def test_read_idx_large_header_small_gzip(tmp_path):
    """Plausible-looking header (1 GB) on a tiny gzip file fails before reading."""
    head = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 1_000_000, 1000, 1)
    p = write(tmp_path / "big-gz", head + b"\x07" * 100, gz=True)
    with pytest.raises(ShapeError, match="impossible"):
        data.read_idx(p)


def test_read_idx_corrupt_gzip_stream(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    good = gzip.compress(idx_bytes(arr, 0x08))
    # Cut the compressed stream in the middle.
    p1 = write(tmp_path / "cut.gz", good[: len(good) // 2])
    with pytest.raises(ValidationError) as ei:
        data.read_idx(p1)
    assert str(p1) in str(ei.value)
    # Flip bytes inside the deflate stream.
    bad = bytearray(good)
    for i in range(40, min(len(bad) - 10, 400)):
        bad[i] ^= 0xFF
    p2 = write(tmp_path / "garbled.gz", bytes(bad))
    with pytest.raises(ValidationError) as ei:
        data.read_idx(p2)
    assert str(p2) in str(ei.value)
    # Only the gzip magic, nothing else.
    p3 = write(tmp_path / "magic-only.gz", b"\x1f\x8b")
    with pytest.raises(ValidationError):
        data.read_idx(p3)


# ----------------------------------------------------------------------------- read_idx / loaders on the Debian files


@needs_debian
@pytest.mark.parametrize("prefix,n", [("t10k", 10000), ("train", 60000)])
def test_read_idx_matches_reference_decoding(prefix, n):
    img_path = os.path.join(DEBIAN_ROOT, f"{prefix}-images-idx3-ubyte.gz")
    lab_path = os.path.join(DEBIAN_ROOT, f"{prefix}-labels-idx1-ubyte.gz")
    images = data.read_idx(img_path)
    labels = data.read_idx(lab_path)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8
    np.testing.assert_array_equal(images, reference_decode(img_path, 16, (28, 28)))
    np.testing.assert_array_equal(labels, reference_decode(lab_path, 8, ()))


@needs_debian
def test_read_idx_plain_copy_matches_gzip(tmp_path):
    src = os.path.join(DEBIAN_ROOT, "t10k-labels-idx1-ubyte.gz")
    with gzip.open(src, "rb") as f:
        raw = f.read()
    p = write(tmp_path / "t10k-labels-idx1-ubyte", raw)
    np.testing.assert_array_equal(data.read_idx(p), data.read_idx(src))


@needs_debian
@pytest.mark.parametrize("split,n", [("test", 10000), ("train", 60000)])
def test_load_fashion_mnist_shapes_and_balance(split, n):
    x, y = data.load_fashion_mnist(split)
    assert x.shape == (n, 1, 28, 28) and x.dtype == np.float32
    assert x.flags["C_CONTIGUOUS"]
    assert y.shape == (n,) and y.dtype == np.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x.max()) == 1.0  # some pixel is 255
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [n // 10] * 10)


@needs_debian
def test_load_fashion_mnist_raw_and_normalized_agree():
    xr, yr = data.load_fashion_mnist("test", normalize=False)
    xn, yn = data.load_fashion_mnist("test", root=DEBIAN_ROOT, normalize=True)
    assert xr.shape == (10000, 1, 28, 28) and xr.dtype == np.uint8
    np.testing.assert_array_equal(yr, yn)
    np.testing.assert_array_equal(xn, xr.astype(np.float32) / np.float32(255))
    ref = reference_decode(os.path.join(DEBIAN_ROOT, "t10k-images-idx3-ubyte.gz"), 16, (28, 28))
    np.testing.assert_array_equal(xr[:, 0], ref)


@needs_debian
def test_sample_is_first_2000_test_images():
    xs, ys = data.load_sample()
    xt, yt = data.load_fashion_mnist("test")
    assert xs.shape == (2000, 1, 28, 28)
    np.testing.assert_array_equal(xs, xt[:2000])
    np.testing.assert_array_equal(ys, yt[:2000])


# ----------------------------------------------------------------------------- loaders without the Debian files


def test_load_fashion_mnist_bad_split(tmp_path):
    for split in ("val", "TEST", "", None, 1):
        with pytest.raises(ValidationError, match="split"):
            data.load_fashion_mnist(split, root=tmp_path)


def test_load_fashion_mnist_missing_root(tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(DataNotFoundError) as ei:
        data.load_fashion_mnist("test", root=missing)
    msg = str(ei.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "root=" in msg
    assert str(missing) in msg
    assert isinstance(ei.value, FileNotFoundError)


def test_load_fashion_mnist_missing_files(tmp_path):
    write_fake_dataset(tmp_path, prefix="t10k")  # test split only
    data.load_fashion_mnist("test", root=tmp_path)
    with pytest.raises(DataNotFoundError, match="train-images-idx3-ubyte") as ei:
        data.load_fashion_mnist("train", root=tmp_path)
    assert "apt-get install dataset-fashion-mnist" in str(ei.value)


@pytest.mark.parametrize("gz", [False, True])
def test_load_fashion_mnist_from_custom_root(tmp_path, gz):
    images, labels = write_fake_dataset(tmp_path, n=7, gz=gz, prefix="train")
    x, y = data.load_fashion_mnist("train", root=str(tmp_path))
    assert x.shape == (7, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / 255)
    np.testing.assert_array_equal(y, labels.astype(np.int64))
    xr, _ = data.load_fashion_mnist("train", root=tmp_path, normalize=False)
    assert xr.dtype == np.uint8 and xr.shape == (7, 1, 28, 28)
    np.testing.assert_array_equal(xr[:, 0], images)


def test_env_var_overrides_default_root(tmp_path, monkeypatch):
    images, labels = write_fake_dataset(tmp_path, n=3)
    monkeypatch.setenv("LPCV_FASHION_MNIST", str(tmp_path))
    x, y = data.load_fashion_mnist("test", normalize=False)
    np.testing.assert_array_equal(x[:, 0], images)
    monkeypatch.setenv("LPCV_FASHION_MNIST", str(tmp_path / "missing"))
    with pytest.raises(DataNotFoundError, match="missing"):
        data.load_fashion_mnist("test")


def test_load_fashion_mnist_inconsistent_files(tmp_path):
    rng = np.random.default_rng(0)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(rng.integers(0, 255, (4, 28, 28), dtype=np.uint8), 0x08))
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(3, np.uint8), 0x08))
    with pytest.raises(ShapeError, match="4 images.*3 labels"):
        data.load_fashion_mnist("test", root=tmp_path)
    # wrong image size
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((3, 32, 32), np.uint8), 0x08))
    with pytest.raises(ShapeError, match="28, 28"):
        data.load_fashion_mnist("test", root=tmp_path)
    # labels out of range
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((3, 28, 28), np.uint8), 0x08))
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 12], np.uint8), 0x08))
    with pytest.raises(ValidationError, match="0..9"):
        data.load_fashion_mnist("test", root=tmp_path)


def test_load_fashion_mnist_truncated_file_names_file(tmp_path):
    write_fake_dataset(tmp_path, n=4, gz=False)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(ShapeError) as ei:
        data.load_fashion_mnist("test", root=tmp_path)
    assert str(p) in str(ei.value)


# ----------------------------------------------------------------------------- bundled sample


def test_load_sample_format():
    x, y = data.load_sample()
    assert x.shape == (2000, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (2000,) and y.dtype == np.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # all ten classes, roughly balanced (each between 180 and 220 images)
    counts = np.bincount(y, minlength=10)
    assert counts.sum() == 2000 and counts.min() >= 180 and counts.max() <= 220
    # pixel values are k/255
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)


def test_load_sample_n():
    x, y = data.load_sample()
    x5, y5 = data.load_sample(5)
    assert x5.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(x5, x[:5])
    np.testing.assert_array_equal(y5, y[:5])
    assert data.load_sample(np.int64(2000))[0].shape[0] == 2000
    # the first test image of Fashion-MNIST is an ankle boot
    assert data.CLASS_NAMES[int(y[0])] == "Ankle boot"


@pytest.mark.parametrize("bad", [0, -1, 2001, 1.5, "10", True])
def test_load_sample_bad_n(bad):
    with pytest.raises(ValidationError, match="n must"):
        data.load_sample(bad)


def test_sample_license_shipped():
    d = Path(data.__file__).resolve().parent / "_data"
    lic = (d / "LICENSE-fashion-mnist.txt").read_text(encoding="utf-8")
    assert "Zalando SE" in lic and "2017" in lic and "MIT" in lic


# ----------------------------------------------------------------------------- reference models


def _card():
    path = REFERENCE_DIR / "model_card.json"
    assert path.exists(), "the package ships python/lpcv/_reference/model_card.json"
    return json.loads(path.read_text())


def test_reference_model_card():
    card = _card()["models"]
    assert set(card) == set(REFERENCE_MODELS)
    for name, entry in card.items():
        assert (REFERENCE_DIR / entry["file"]).is_file()
        assert entry["opset"] == 13
        assert entry["accuracy"]["test_images"] == 10000
        assert entry["accuracy"]["sample_images"] == 2000
        assert 0.85 < entry["accuracy"]["test"] <= 1.0
        assert entry["params"] > 0
    assert card["fmnist-mobilenet"]["batchnorm_nodes"] > 0
    assert card["fmnist-resnet"]["batchnorm_nodes"] > 0


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_reference_model_runs_and_matches_card(name):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    entry = _card()["models"][name]
    path = REFERENCE_DIR / f"{name}.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    # initializers = parameters (+ BN running statistics); never fewer
    assert n_params >= entry["params"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x, y = data.load_sample()
    logits = np.concatenate([sess.run(["logits"], {"input": x[i:i + 500]})[0] for i in range(0, 2000, 500)])
    assert logits.shape == (2000, 10)
    correct = int((logits.argmax(1) == y).sum())
    # identical up to floating-point ties between onnxruntime builds / CPUs
    assert abs(correct - entry["accuracy"]["sample_correct"]) <= 2
