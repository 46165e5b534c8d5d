"""Non-uniform weight quantization: k-means weight sharing with Huffman-coded
indices (Deep Compression), binary weights (XNOR-Net) and ternary weights
(TWN).

* :func:`kmeans_quantize` clusters the weight values (1-D k-means, Lloyd's
  algorithm) into ``n_clusters`` shared values: a float32 codebook plus one
  small integer index per weight. Deep Compression initialises the centroids
  linearly between the minimum and maximum weight (``init="linear"``,
  deterministic), which keeps the rare large weights represented.
* :func:`huffman_bits` is the size in bits of the indices Huffman-coded with
  a code built from their own frequencies (the codebook and code table are
  not included).
* :func:`binarize`: ``w ≈ alpha * b`` with ``b = sign(w)`` in {-1, +1}
  (sign(0) = +1) and ``alpha = mean |w|`` per output channel.
* :func:`ternarize`: ``w ≈ alpha * t`` with ``t`` in {-1, 0, +1}: threshold
  ``delta = 0.7 * mean |w|``, ``t = sign(w)`` where ``|w| > delta``, and
  ``alpha`` the mean of ``|w|`` over those weights (0 if there are none).
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple

import numpy as np

from .. import _core
from ..exceptions import ValidationError
from ._common import (Estimator, as_float32, check_axis, check_choice, check_float,
                      check_int, nan_message)

__all__ = ["kmeans_quantize", "KMeansQuantizer", "huffman_bits", "huffman_code_lengths",
           "binarize", "ternarize"]


def _seed(random_state: Any) -> int:
    if random_state is None:
        return int(np.random.default_rng().integers(2 ** 63))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2 ** 63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2 ** 31 - 1))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValidationError(f"random_state must be >= 0, got {random_state}")
        return int(random_state) % 2 ** 64
    raise TypeError("random_state must be None, an int or a numpy Generator/RandomState, "
                    f"got {type(random_state).__name__}")


def _index_dtype(k: int):
    return np.uint8 if k <= 256 else (np.uint16 if k <= 65536 else np.int32)


def _kmeans(x, n_clusters, init, max_iter, tol, random_state):
    k = check_int(n_clusters, "n_clusters", 1, 65536)
    check_choice(init, "init", ("linear", "random"))
    it = check_int(max_iter, "max_iter", 1)
    tol = check_float(tol, "tol", 0.0, 1.0)
    seed = _seed(random_state) if init == "random" else 0
    try:
        return _core.kmeans_1d(x, k, it, tol, init, seed)
    except ValidationError as e:
        raise nan_message(e, "w") from None


def kmeans_quantize(w: Any, n_clusters: int = 16, init: str = "linear", max_iter: int = 300,
                    tol: float = 0.0, random_state: Any = None
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Weight sharing by 1-D k-means: ``(codebook, indices)`` with ``w ≈ codebook[indices]``.

    Parameters
    ----------
    w : array_like of float
        Weights (any shape). Not modified.
    n_clusters : int, default 16
        Number of shared values (``2**bits``), 1..65536.
    init : {"linear", "random"}, default "linear"
        Centroids evenly spaced in [min(w), max(w)] (Deep Compression), or
        ``n_clusters`` weights drawn at random with ``random_state``.
    max_iter : int, default 300
        Lloyd iterations at most. Iteration stops earlier when no index
        changes or no centroid moves more than ``tol * (max - min)``.
    tol : float, default 0.0
    random_state : None, int or numpy Generator
        Seed of ``init="random"`` (ignored by ``"linear"``, which is deterministic).

    Returns
    -------
    codebook : ndarray of float32, shape (n_clusters,), sorted ascending
    indices : ndarray of uint8 (n_clusters <= 256), uint16 or int32, w's shape
        The nearest codebook entry of each weight (the lower one on exact ties).

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import kmeans_quantize
    >>> w = np.array([-1.0, -0.9, 0.0, 0.1, 0.95, 1.05], dtype=np.float32)
    >>> codebook, idx = kmeans_quantize(w, n_clusters=3)
    >>> codebook, idx
    (array([-0.95,  0.05,  1.  ], dtype=float32), array([0, 0, 1, 1, 2, 2], dtype=uint8))
    >>> codebook[idx]
    array([-0.95, -0.95,  0.05,  0.05,  1.  ,  1.  ], dtype=float32)
    """
    x = as_float32(w, "w")
    cb, labels, _, _ = _kmeans(x, n_clusters, init, max_iter, tol, random_state)
    return cb, labels.astype(_index_dtype(cb.size))


def huffman_code_lengths(indices: Any, n_symbols: Optional[int] = None) -> np.ndarray:
    """Huffman code length (bits) of each symbol 0..n_symbols-1 (0 for unused symbols)."""
    lab, k = _labels(indices, n_symbols)
    return _core.huffman_code_lengths(_core.label_counts(lab, k))


def _labels(indices, n_symbols):
    a = np.asarray(indices)
    if a.dtype.kind not in "iu":
        raise TypeError(f"indices must be an integer array, got dtype {a.dtype}")
    if a.size == 0:
        raise ValidationError("indices is empty")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0:
        raise ValidationError(f"indices must be >= 0, got {lo}")
    k = hi + 1 if n_symbols is None else check_int(n_symbols, "n_symbols", 1)
    if hi >= k:
        raise ValidationError(f"indices must be < n_symbols={k}, got {hi}")
    if k > 2 ** 31 - 1:
        raise ValidationError("too many symbols")
    return np.ascontiguousarray(a, dtype=np.int32).reshape(-1), k


def huffman_bits(indices: Any) -> int:
    """Total size in bits of ``indices`` Huffman-coded with their own frequencies.

    The code is built from the frequency of each index value (the table itself
    is not counted). A single distinct value costs 1 bit per element.

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import huffman_bits
    >>> idx = np.array([0] * 8 + [1] * 4 + [2] * 2 + [3] * 2)   # lengths 1, 2, 3, 3
    >>> huffman_bits(idx), 2 * idx.size                          # vs 2-bit fixed width
    (28, 32)
    """
    lab, k = _labels(indices, None)
    freq = _core.label_counts(lab, k)
    return int(np.dot(freq, _core.huffman_code_lengths(freq)))


class KMeansQuantizer(Estimator):
    """k-means weight sharing as an estimator (see :func:`kmeans_quantize`).

    Parameters
    ----------
    n_clusters : int, default 16
    init : {"linear", "random"}, default "linear"
    max_iter : int, default 300
    tol : float, default 0.0
    random_state : None, int or numpy Generator

    Attributes
    ----------
    codebook_ : ndarray of float32, shape (n_clusters,)
    n_iter_ : int
    inertia_ : float
        Sum of squared distances of the fitted weights to their shared value.

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import KMeansQuantizer
    >>> w = np.random.default_rng(0).standard_normal((64, 9)).astype(np.float32)
    >>> km = KMeansQuantizer(n_clusters=4).fit(w)
    >>> idx = km.transform(w)
    >>> idx.dtype, km.codebook_.shape, km.inverse_transform(idx).shape
    (dtype('uint8'), (4,), (64, 9))
    """

    def __init__(self, n_clusters: int = 16, init: str = "linear", max_iter: int = 300,
                 tol: float = 0.0, random_state: Any = None):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit(self, w: Any, y: Any = None) -> "KMeansQuantizer":
        """Cluster the values of ``w``."""
        x = as_float32(w, "w")
        cb, _, n_iter, inertia = _kmeans(x, self.n_clusters, self.init, self.max_iter, self.tol,
                                         self.random_state)
        self.codebook_ = cb
        self.n_iter_ = int(n_iter)
        self.inertia_ = float(inertia)
        return self

    def transform(self, w: Any) -> np.ndarray:
        """Index of the nearest codebook entry for every value of ``w``."""
        self._check_fitted("codebook_")
        x = as_float32(w, "w")
        try:
            labels, _ = _core.kmeans_assign(x, self.codebook_)
        except ValidationError as e:
            raise nan_message(e, "w") from None
        return labels.astype(_index_dtype(self.codebook_.size))

    def fit_transform(self, w: Any, y: Any = None) -> np.ndarray:
        return self.fit(w).transform(w)

    def inverse_transform(self, indices: Any) -> np.ndarray:
        """Shared values ``codebook_[indices]`` (float32)."""
        self._check_fitted("codebook_")
        a = np.asarray(indices)
        if a.dtype.kind not in "iu":
            raise TypeError(f"indices must be an integer array, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= self.codebook_.size):
            raise ValidationError(f"indices must be in [0, {self.codebook_.size})")
        return self.codebook_[a]

    def fake_quantize(self, w: Any) -> np.ndarray:
        """``inverse_transform(transform(w))``."""
        return self.inverse_transform(self.transform(w))


def _channel_layout(x: np.ndarray, axis):
    if axis is None:
        return "per_tensor", 0, ()
    ax = check_axis(axis, x.ndim)
    return "per_channel", ax, (x.shape[ax],)


def binarize(w: Any, axis: Optional[int] = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Binary weights (XNOR-Net): ``(b, alpha)`` with ``w ≈ alpha * b``.

    Parameters
    ----------
    w : array_like of float
        Weights, e.g. OIHW convolution filters.
    axis : int or None, default 0
        Axis of the output channels (one ``alpha`` per filter); ``None`` for
        one ``alpha`` for the whole tensor.

    Returns
    -------
    b : ndarray of int8 in {-1, +1}, w's shape (sign(0) = +1)
    alpha : ndarray of float32, shape ``(w.shape[axis],)`` (``()`` if axis is None)
        ``mean |w|`` over each channel, the scale minimizing ``||w - alpha b||²``.

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import binarize
    >>> b, alpha = binarize(np.array([[0.5, -1.5], [0.0, -0.2]], np.float32))
    >>> b, alpha
    (array([[ 1, -1],
           [ 1, -1]], dtype=int8), array([1. , 0.1], dtype=float32))
    """
    x = as_float32(w, "w")
    gran, ax, pshape = _channel_layout(x, axis)
    try:
        b, alpha = _core.binarize(x, gran, ax, 1)
    except ValidationError as e:
        raise nan_message(e, "w") from None
    return b, alpha.reshape(pshape)


def ternarize(w: Any, axis: Optional[int] = 0, threshold: float = 0.7
              ) -> Tuple[np.ndarray, np.ndarray]:
    """Ternary weights (TWN): ``(t, alpha)`` with ``w ≈ alpha * t``, t in {-1, 0, +1}.

    Parameters
    ----------
    w : array_like of float
    axis : int or None, default 0
        Output-channel axis (one threshold and ``alpha`` per channel), or None.
    threshold : float, default 0.7
        ``delta = threshold * mean |w|`` (TWN's approximation of the optimal
        threshold for Gaussian-like weights).

    Returns
    -------
    t : ndarray of int8 in {-1, 0, +1}, w's shape
    alpha : ndarray of float32, shape ``(w.shape[axis],)`` (``()`` if axis is None)
        Mean ``|w|`` over the weights above the threshold (0 when none is).

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import ternarize
    >>> t, alpha = ternarize(np.array([[1.0, -0.1, -0.9, 0.2]], np.float32))
    >>> t, alpha                       # delta = 0.7 * 0.55 = 0.385
    (array([[ 1,  0, -1,  0]], dtype=int8), array([0.95], dtype=float32))
    """
    x = as_float32(w, "w")
    gran, ax, pshape = _channel_layout(x, axis)
    f = check_float(threshold, "threshold", 0.0, 1e6)
    try:
        t, alpha, _ = _core.ternarize(x, gran, ax, 1, f)
    except ValidationError as e:
        raise nan_message(e, "w") from None
    return t, alpha.reshape(pshape)
