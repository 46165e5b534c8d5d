"""Fashion-MNIST loading: an IDX reader, the full data set, and a bundled sample.

lpcv does not download anything. The full data set is read from the files of
the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``)
or from any directory holding the four official IDX files, plain or gzipped.
A 2000-image sample of the official test split ships inside the package so that
examples and tests run everywhere (see :func:`load_sample`).

Image format
------------
Every loader returns images in NCHW layout, shape ``(N, 1, 28, 28)``:

* ``normalize=True`` (default): ``float32`` scaled to ``[0, 1]`` (pixel / 255),
  which is the input format of the reference models in ``lpcv/_reference``;
* ``normalize=False``: the raw ``uint8`` pixels, values ``0..255``.

Labels are ``int64`` of shape ``(N,)`` with values ``0..9``; see
:data:`CLASS_NAMES`.

Examples
--------
>>> from lpcv.data import load_sample, CLASS_NAMES
>>> images, labels = load_sample(4)
>>> images.shape, images.dtype, labels.dtype
((4, 1, 28, 28), dtype('float32'), dtype('int64'))
>>> CLASS_NAMES[int(labels[0])]
'Ankle boot'
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from .exceptions import DataNotFoundError, ShapeError, ValidationError

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_ROOT",
    "ENV_VAR",
    "SAMPLE_SIZE",
    "read_idx",
    "load_fashion_mnist",
    "load_sample",
]

#: The ten Fashion-MNIST classes, indexed by label.
CLASS_NAMES: Tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Where the Debian package ``dataset-fashion-mnist`` installs the IDX files.
DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"

#: Environment variable that overrides :data:`DEFAULT_ROOT`.
ENV_VAR = "LPCV_FASHION_MNIST"

#: Number of images in the bundled sample (the first images of the test split).
SAMPLE_SIZE = 2000

_SAMPLE_PATH = Path(__file__).resolve().parent / "_data" / "fmnist_test_sample.npz"

# IDX type code -> (numpy dtype, big-endian on disk).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Deflate cannot compress better than about 1032:1, so a gzip file of ``c``
# bytes can never hold more than this many bytes per compressed byte.
_MAX_DEFLATE_RATIO = 1100

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

_INSTALL_HINT = (
    "install the Debian package with `apt-get install dataset-fashion-mnist`, "
    f"set the environment variable {ENV_VAR}, or pass root= pointing to a "
    "directory holding the Fashion-MNIST IDX files"
)


def _parse_header(path: str, head: bytes) -> Tuple[np.dtype, int]:
    """Validate the 4-byte magic number; return (dtype, number of dimensions)."""
    if len(head) < 4:
        raise ShapeError(
            f"{path}: truncated IDX file: expected at least a 4-byte magic number, "
            f"got {len(head)} byte(s)"
        )
    if head[0] != 0 or head[1] != 0:
        raise ValidationError(
            f"{path}: not an IDX file: magic number must start with two zero bytes, "
            f"got 0x{head[:4].hex()}"
        )
    code, ndim = head[2], head[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in sorted(_IDX_DTYPES))
        raise ValidationError(
            f"{path}: unknown IDX dtype code 0x{code:02X} (expected one of {known})"
        )
    if ndim == 0:
        raise ValidationError(
            f"{path}: IDX header declares 0 dimensions (expected at least 1)"
        )
    return _IDX_DTYPES[code], ndim


def _parse_dims(path: str, head: bytes, ndim: int) -> Tuple[int, ...]:
    need = 4 + 4 * ndim
    if len(head) < need:
        raise ShapeError(
            f"{path}: truncated IDX header: {ndim} dimension(s) need {need} header "
            f"bytes, the file has only {len(head)}"
        )
    return tuple(struct.unpack(f">{ndim}I", head[4:need]))


def _describe(shape: Tuple[int, ...], dtype: np.dtype) -> str:
    return f"shape {shape} of {dtype.name}"


def read_idx(path: Union[str, "os.PathLike[str]"]) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST container format).

    The file may be plain or gzip-compressed (detected from its first bytes,
    not its name). The header is validated before any payload is read: the
    magic number (two zero bytes, a type code, a dimension count), the type
    code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32,
    ``0x0D`` float32, ``0x0E`` float64) and that the payload size matches the
    dimensions exactly. Sizes are checked against the file length before
    anything is allocated, so an absurd header fails fast instead of
    allocating gigabytes.

    Parameters
    ----------
    path : str or os.PathLike
        The IDX file.

    Returns
    -------
    numpy.ndarray
        The array, with the dimensions from the header and the native-endian
        version of the on-disk type (e.g. ``uint8`` for images, ``int32``
        for ``0x0C``).

    Raises
    ------
    DataNotFoundError
        If ``path`` does not exist.
    ValidationError
        If the file is not IDX (bad magic number or type code) or is a
        corrupt gzip stream.
    ShapeError
        If the file is truncated or has trailing bytes, i.e. its size does
        not match the header (``ShapeError`` is a ``ValidationError``).

    Examples
    --------
    >>> import os, struct, tempfile
    >>> import numpy as np
    >>> from lpcv.data import read_idx
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny-idx2-ubyte")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(bytes([0, 0, 0x08, 2]) + struct.pack(">II", 2, 3))
    ...     _ = f.write(bytes(range(6)))
    >>> read_idx(path)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataNotFoundError(f"IDX file not found: {path}")
    if os.path.isdir(path):
        raise ValidationError(f"{path}: expected an IDX file, got a directory")
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
    if is_gzip:
        return _read_idx_gzip(path, file_size)
    return _read_idx_plain(path, file_size)


def _read_idx_plain(path: str, file_size: int) -> np.ndarray:
    with open(path, "rb") as f:
        head = f.read(4)
        dtype, ndim = _parse_header(path, head)
        head += f.read(4 * ndim)
        shape = _parse_dims(path, head, ndim)
        header_len = len(head)
        count = int(np.prod(shape, dtype=object))
        expected = header_len + count * dtype.itemsize
        if file_size != expected:
            kind = "truncated" if file_size < expected else "has trailing bytes"
            raise ShapeError(
                f"{path}: IDX file {kind}: header declares {_describe(shape, dtype)} "
                f"= {expected} bytes with the {header_len}-byte header, "
                f"but the file has {file_size} bytes"
            )
        data = np.fromfile(f, dtype=dtype, count=count)
    if data.size != count:  # file changed while reading
        raise ShapeError(f"{path}: IDX file truncated while reading")
    return data.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _read_idx_gzip(path: str, file_size: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(4)
            dtype, ndim = _parse_header(path, head)
            head += f.read(4 * ndim)
            shape = _parse_dims(path, head, ndim)
            header_len = len(head)
            count = int(np.prod(shape, dtype=object))
            nbytes = count * dtype.itemsize
            expected = header_len + nbytes
            limit = _MAX_DEFLATE_RATIO * file_size + 1024
            if expected > limit:
                raise ShapeError(
                    f"{path}: IDX header declares {_describe(shape, dtype)} = "
                    f"{expected} bytes, impossible for a {file_size}-byte gzip file "
                    "(truncated or corrupt file)"
                )
            # Read incrementally: memory grows only with data actually present.
            buf = bytearray()
            chunk = 1 << 20
            while len(buf) < nbytes:
                part = f.read(min(chunk, nbytes - len(buf)))
                if not part:
                    break
                buf += part
            if len(buf) < nbytes:
                raise ShapeError(
                    f"{path}: IDX file truncated: header declares "
                    f"{_describe(shape, dtype)} = {nbytes} payload bytes, "
                    f"the decompressed payload has only {len(buf)}"
                )
            extra = f.read(1)
            if extra:
                raise ShapeError(
                    f"{path}: IDX file has trailing bytes after the "
                    f"{nbytes}-byte payload of {_describe(shape, dtype)}"
                )
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataNotFoundError(f"IDX file not found: {path}") from exc
        raise ValidationError(
            f"{path}: corrupt or truncated gzip stream ({type(exc).__name__}: {exc})"
        ) from exc
    data = np.frombuffer(buf, dtype=dtype, count=count)
    return data.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _resolve_root(root: Optional[Union[str, "os.PathLike[str]"]]) -> Path:
    if root is None:
        root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return Path(os.fspath(root))


def _find_file(root: Path, stem: str) -> Optional[Path]:
    # Official names, plus the "train-images.idx3-ubyte" variant some mirrors use.
    names = [stem, stem.replace("-idx", ".idx")]
    for name in names:
        for suffix in ("", ".gz"):
            p = root / (name + suffix)
            if p.is_file():
                return p
    return None


def load_fashion_mnist(
    split: str = "test",
    root: Optional[Union[str, "os.PathLike[str]"]] = None,
    normalize: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """Load one split of Fashion-MNIST from its IDX files.

    Parameters
    ----------
    split : {"test", "train"}
        ``"test"`` (10,000 images, files ``t10k-*``) or ``"train"``
        (60,000 images, files ``train-*``).
    root : str or os.PathLike, optional
        Directory holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``,
        plain or with ``.gz``. Defaults to the environment variable
        ``LPCV_FASHION_MNIST`` if set, else ``/usr/share/datasets/fashion-mnist``
        (the Debian package ``dataset-fashion-mnist``).
    normalize : bool, default True
        If true, return ``float32`` images scaled to ``[0, 1]``; otherwise the
        raw ``uint8`` pixels.

    Returns
    -------
    images : numpy.ndarray
        Shape ``(N, 1, 28, 28)``, ``float32`` in ``[0, 1]`` or ``uint8``.
    labels : numpy.ndarray
        Shape ``(N,)``, ``int64`` in ``0..9`` (see :data:`CLASS_NAMES`).

    Raises
    ------
    ValidationError
        If ``split`` is not ``"train"`` or ``"test"``, or a file is corrupt.
    DataNotFoundError
        If the directory or a file is missing (the message tells how to
        install the data set).
    ShapeError
        If the files do not hold 28x28 images and one label per image.

    Examples
    --------
    >>> from lpcv.data import load_fashion_mnist
    >>> x, y = load_fashion_mnist("test")  # needs dataset-fashion-mnist
    >>> x.shape, x.dtype, float(x.max()) <= 1.0
    ((10000, 1, 28, 28), dtype('float32'), True)
    >>> y.shape, y.dtype, int(y.max())
    ((10000,), dtype('int64'), 9)
    """
    if not isinstance(split, str) or split not in _SPLIT_PREFIX:
        raise ValidationError(
            f"split must be 'train' or 'test', got {split!r}"
        )
    base = _resolve_root(root)
    if not base.is_dir():
        raise DataNotFoundError(
            f"Fashion-MNIST directory not found: {base}; {_INSTALL_HINT}"
        )
    prefix = _SPLIT_PREFIX[split]
    found = {}
    for kind, stem in (
        ("images", f"{prefix}-images-idx3-ubyte"),
        ("labels", f"{prefix}-labels-idx1-ubyte"),
    ):
        p = _find_file(base, stem)
        if p is None:
            raise DataNotFoundError(
                f"Fashion-MNIST file {stem}[.gz] not found in {base}; {_INSTALL_HINT}"
            )
        found[kind] = p
    images = read_idx(found["images"])
    labels = read_idx(found["labels"])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ShapeError(
            f"{found['images']}: expected uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ShapeError(
            f"{found['labels']}: expected uint8 labels of shape (N,), "
            f"got {labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ShapeError(
            f"{found['images']} holds {images.shape[0]} images but "
            f"{found['labels']} holds {labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= len(CLASS_NAMES):
        raise ValidationError(
            f"{found['labels']}: labels must be in 0..9, found {int(labels.max())}"
        )
    images = images.reshape(images.shape[0], 1, 28, 28)
    return _format(images, normalize), labels.astype(np.int64)


def _format(images: np.ndarray, normalize: bool) -> np.ndarray:
    if normalize:
        return images.astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(images)


def load_sample(n: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Load the Fashion-MNIST sample bundled with lpcv.

    The sample is the first 2000 images of the official Fashion-MNIST test
    split (``t10k``), in file order, with their labels. It is stored in
    ``lpcv/_data/fmnist_test_sample.npz`` (MIT license, Copyright (c) 2017
    Zalando SE; see ``lpcv/_data/LICENSE-fashion-mnist.txt``), so it needs no
    download and no system package.

    Parameters
    ----------
    n : int, optional
        Return only the first ``n`` images (``1 <= n <= 2000``). ``None``
        returns all 2000.

    Returns
    -------
    images : numpy.ndarray
        ``float32`` of shape ``(n, 1, 28, 28)`` in ``[0, 1]``, the same
        format as ``load_fashion_mnist(normalize=True)``.
    labels : numpy.ndarray
        ``int64`` of shape ``(n,)``.

    Raises
    ------
    ValidationError
        If ``n`` is not an integer in ``1..2000``.
    DataNotFoundError
        If the bundled file is missing (broken installation).

    Examples
    --------
    >>> from lpcv.data import load_sample
    >>> x, y = load_sample()
    >>> x.shape, y.shape
    ((2000, 1, 28, 28), (2000,))
    >>> x, y = load_sample(16)
    >>> x.shape, float(x.min()) >= 0.0, float(x.max()) <= 1.0
    ((16, 1, 28, 28), True, True)
    """
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise ValidationError(f"n must be an int or None, got {type(n).__name__}")
        if not 1 <= int(n) <= SAMPLE_SIZE:
            raise ValidationError(f"n must be in 1..{SAMPLE_SIZE}, got {int(n)}")
    if not _SAMPLE_PATH.is_file():
        raise DataNotFoundError(
            f"bundled Fashion-MNIST sample missing: {_SAMPLE_PATH} "
            "(reinstall lpcv, or regenerate it with scripts/make_sample.py)"
        )
    with np.load(_SAMPLE_PATH, allow_pickle=False) as z:
        images = z["images"]
        labels = z["labels"]
    if n is not None:
        images = images[: int(n)]
        labels = labels[: int(n)]
    images = images.reshape(images.shape[0], 1, 28, 28)
    return _format(images, True), labels.astype(np.int64)
