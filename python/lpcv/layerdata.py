"""Layer data for layer-wise compression: input patches (im2col) and streaming
Hessians.

Layer-wise methods (GPTQ, AdaRound, OBS-style pruning) see a layer as a
matrix product. A dense layer computes ``y = W x`` for each input row ``x``;
a convolution becomes one by unfolding its input into patch rows with
:func:`im2col`. Grouped (and depthwise) convolutions are ``G`` independent
problems, so everything here is 3-D:

* weights ``W``: ``(G, M, K)`` with ``M = Cout / G`` output rows per group and
  ``K = Cin / G * kh * kw`` inputs per row (``w.reshape(G, Cout // G, -1)`` of an
  ONNX ``(Cout, Cin/G, kh, kw)`` weight);
* layer inputs ``X``: ``(G, N, K)``, one row per output position
  (``N = batch * OH * OW`` for a convolution, the batch for a dense layer);
* Hessians ``H``: ``(G, K, K)``, ``H_g = (2 / N) * X_g^T X_g``.

:class:`HessianAccumulator` builds ``H`` from batches in constant memory
(float64 sums of float32 GEMM products over chunks of at most 4096 rows, so
an entry's relative rounding error is about that of a float32 sum of 4096
products, ~1e-6, and does not grow with the number of batches), and draws
bounded random subsets of the rows for methods that need the rows themselves
(AdaRound).

Examples
--------
>>> import numpy as np
>>> from lpcv.layerdata import im2col, HessianAccumulator
>>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
>>> cols = im2col(x, (3, 3))            # 2 x 2 output positions, 9 inputs each
>>> cols.shape
(1, 4, 9)
>>> cols[0, 0]
array([ 0.,  1.,  2.,  4.,  5.,  6.,  8.,  9., 10.], dtype=float32)
>>> acc = HessianAccumulator("conv", kernel_shape=(3, 3)).update(x)
>>> acc.hessian_.shape, acc.n_rows_, acc.n_samples_
((1, 9, 9), 4, 1)
>>> bool(np.allclose(acc.hessian_[0], 2 / 4 * cols[0].T.astype(np.float64) @ cols[0]))
True
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from .exceptions import NotFittedError, ShapeError, ValidationError
from .quantize._common import check_choice, check_int

__all__ = ["im2col", "conv_output_shape", "row_indices", "HessianAccumulator"]

IntOrSeq = Union[int, Sequence[int]]


def _as_input(x: Any, name: str = "x") -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must be a real floating-point array, got dtype {a.dtype}")
    if a.size == 0:
        raise ValidationError(f"{name} is empty (shape {a.shape})")
    return np.ascontiguousarray(a, dtype=np.float32)


def _ints(v: Any, n: int, name: str, lo: int) -> Tuple[int, ...]:
    if isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_)):
        v = (int(v),) * n
    try:
        t = tuple(v)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {v!r}") from None
    if len(t) != n:
        raise ValidationError(f"{name} must have {n} values, got {len(t)} ({v!r})")
    return tuple(check_int(e, name, lo) for e in t)


def _geometry(x_shape, kernel_shape, strides, pads, dilations, group):
    """(4-d input shape, kernel, strides, pads[4], dilations, group) for the core;
    1-D convolutions (3-d inputs) become 2-D ones with height 1."""
    nd = len(x_shape) - 2
    if nd not in (1, 2):
        raise ShapeError(f"x must be (N, C, L) or (N, C, H, W) (NCHW), got shape {tuple(x_shape)}")
    k = _ints(kernel_shape, nd, "kernel_shape", 1)
    s = _ints(strides, nd, "strides", 1)
    d = _ints(dilations, nd, "dilations", 1)
    if isinstance(pads, (numbers.Integral, np.integer)) and not isinstance(pads, bool):
        p = _ints(pads, 2 * nd, "pads", 0)
    else:
        p = _ints(pads, len(tuple(pads)), "pads", 0) if pads is not None else (0,) * 2 * nd
        if len(p) == nd:      # symmetric (begin = end)
            p = p + p
        if len(p) != 2 * nd:
            raise ValidationError(f"pads must have {2 * nd} values [begins..., ends...] "
                                  f"(ONNX order), got {len(p)}")
    g = check_int(group, "group", 1)
    if x_shape[1] % g:
        raise ValidationError(f"group={g} does not divide the {x_shape[1]} input channels")
    if nd == 1:
        shape4 = (int(x_shape[0]), int(x_shape[1]), 1, int(x_shape[2]))
        return shape4, [1, k[0]], [1, s[0]], [0, p[0], 0, p[1]], [1, d[0]], g
    return (tuple(int(e) for e in x_shape), list(k), list(s), [p[0], p[1], p[2], p[3]],
            list(d), g)


def conv_output_shape(x_shape: Sequence[int], kernel_shape: IntOrSeq, strides: IntOrSeq = 1,
                      pads: IntOrSeq = 0, dilations: IntOrSeq = 1,
                      group: int = 1) -> Tuple[int, int, int]:
    """``(G, N * OH * OW, Cin / G * kh * kw)``: the shape :func:`im2col` returns.

    Examples
    --------
    >>> conv_output_shape((2, 8, 10, 10), 3, strides=2, pads=1, group=4)
    (4, 50, 18)
    """
    geo = _geometry(tuple(x_shape), kernel_shape, strides, pads, dilations, group)
    _, _, rows, cols = _core.conv_output_shape(*geo)
    return geo[5], int(rows), int(cols)


def im2col(x: Any, kernel_shape: IntOrSeq, strides: IntOrSeq = 1, pads: IntOrSeq = 0,
           dilations: IntOrSeq = 1, group: int = 1, rows: Any = None) -> np.ndarray:
    """Unfold an NCHW convolution input into patch rows (ONNX ``Conv`` semantics).

    Parameters
    ----------
    x : array_like of float, shape (N, C, H, W) or (N, C, L)
        The convolution's input (computed in float32; not modified).
    kernel_shape : int or (kh, kw)
        Spatial kernel extents (``(k,)`` for 1-D).
    strides, dilations : int or (sh, sw)
    pads : int, (ph, pw) or (top, left, bottom, right)
        ONNX ``pads`` order: all begins, then all ends (``(begin, end)`` for
        1-D). Resolve ``auto_pad`` before calling.
    group : int
        Convolution groups (``C`` for depthwise).
    rows : array_like of int, optional
        Return only these rows (indices into ``N * OH * OW``), in this order.

    Returns
    -------
    ndarray of float32, shape (group, N * OH * OW, C / group * kh * kw)
        Row ``(n * OH + oh) * OW + ow``; column ``(c * kh + i) * kw + j``. With
        ``W`` of shape ``(Cout, C/group, kh, kw)``, ``Wg = W.reshape(group, Cout //
        group, -1)``, ``Wg[g] @ cols[g].T`` is the convolution output of group
        ``g``'s channels at every position.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 1, 4)
    >>> im2col(x, (1, 2), strides=2, group=2)
    array([[[0., 1.],
            [2., 3.]],
    <BLANKLINE>
           [[4., 5.],
            [6., 7.]]], dtype=float32)
    """
    a = _as_input(x)
    geo = _geometry(a.shape, kernel_shape, strides, pads, dilations, group)
    a4 = a.reshape(geo[0])
    r = None
    if rows is not None:
        r = np.asarray(rows)
        if r.dtype.kind not in "iu" or r.ndim != 1:
            raise ValidationError(f"rows must be a 1-d integer array, got {r.dtype} "
                                  f"shape {r.shape}")
        r = np.ascontiguousarray(r, dtype=np.int64)
    return _core.im2col(a4, geo[1], geo[2], geo[3], geo[4], geo[5], r)


def _rng(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (isinstance(random_state, (numbers.Integral, np.integer))
                                and not isinstance(random_state, bool)):
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state must be None, an int or a numpy Generator, "
                    f"got {random_state!r}")


def row_indices(n_rows: int, max_rows: Optional[int], random_state: Any = None) -> np.ndarray:
    """A sorted random subset of ``range(n_rows)`` of at most ``max_rows`` rows.

    All rows when ``max_rows`` is None or ``>= n_rows``. The same
    ``random_state`` (int) gives the same subset, so the rows of a layer's
    float input and of its quantized-model input can be matched.

    Examples
    --------
    >>> row_indices(10, 4, random_state=0).shape
    (4,)
    >>> row_indices(3, 100)
    array([0, 1, 2])
    """
    n = check_int(n_rows, "n_rows", 0)
    if max_rows is None or max_rows >= n:
        if max_rows is not None:
            check_int(max_rows, "max_rows", 1)
        return np.arange(n, dtype=np.int64)
    m = check_int(max_rows, "max_rows", 1)
    idx = _rng(random_state).choice(n, size=m, replace=False)
    return np.sort(idx).astype(np.int64)


class HessianAccumulator:
    """Streaming layer Hessian ``H = (2 / n) * sum(X^T X)`` over batches.

    Parameters
    ----------
    kind : {"dense", "conv"}
        ``"dense"``: each input row is one row of ``X`` (inputs ``(N, K)``;
        higher-rank inputs ``(N, ...)`` are flattened to ``(N, K)`` like ONNX
        ``Flatten`` before a ``Gemm``). ``"conv"``: rows are the im2col patches
        of an NCHW input (see :func:`im2col`), one per output position.
    kernel_shape, strides, pads, dilations, group :
        The convolution's geometry (``kind="conv"`` only; see :func:`im2col`).

    Attributes
    ----------
    hessian_ : ndarray of float64, shape (G, K, K)
        ``(2 / n_rows_) * sum over rows of x x^T``, per group.
    n_rows_ : int
        Rows accumulated (``n`` above).
    n_samples_ : int
        Input samples (first-axis entries) accumulated.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> acc = HessianAccumulator("dense")
    >>> x = rng.standard_normal((100, 8)).astype(np.float32)
    >>> _ = acc.update(x[:60]).update(x[60:])
    >>> bool(np.allclose(acc.hessian_[0], 2 / 100 * x.T.astype(np.float64) @ x, atol=1e-5))
    True
    >>> acc.sample_rows(x, max_rows=16, random_state=0).shape
    (1, 16, 8)
    """

    def __init__(self, kind: str = "dense", kernel_shape: Optional[IntOrSeq] = None,
                 strides: IntOrSeq = 1, pads: IntOrSeq = 0, dilations: IntOrSeq = 1,
                 group: int = 1):
        self.kind = kind
        self.kernel_shape = kernel_shape
        self.strides = strides
        self.pads = pads
        self.dilations = dilations
        self.group = group

    # -- geometry -----------------------------------------------------------
    def _check_settings(self) -> None:
        check_choice(self.kind, "kind", ("dense", "conv"))
        if self.kind == "conv" and self.kernel_shape is None:
            raise ValidationError("kernel_shape is required for kind='conv'")
        if self.kind == "dense" and self.group != 1:
            raise ValidationError(f"group must be 1 for kind='dense', got {self.group!r}")

    def _conv_geo(self, shape):
        return _geometry(shape, self.kernel_shape, self.strides, self.pads, self.dilations,
                         self.group)

    def _dense_rows(self, x: np.ndarray) -> np.ndarray:
        if x.ndim < 2:
            raise ShapeError(f"x must be (N, K) or (N, ...) for kind='dense', got shape {x.shape}")
        return x.reshape(x.shape[0], -1)

    def n_rows(self, x: Any) -> int:
        """Number of rows (``X`` rows per group) that input batch ``x`` gives."""
        self._check_settings()
        shape = np.shape(x)
        if self.kind == "dense":
            if len(shape) < 2:
                raise ShapeError(f"x must be (N, K) or (N, ...) for kind='dense', "
                                 f"got shape {shape}")
            return int(shape[0])
        _, rows, _ = conv_output_shape(shape, self.kernel_shape, self.strides, self.pads,
                                       self.dilations, self.group)
        return rows

    def rows(self, x: Any, indices: Any = None) -> np.ndarray:
        """The rows ``X`` of input batch ``x``, shape ``(G, n, K)`` float32.

        ``indices`` (int array) selects rows (all when None), e.g. from
        :func:`row_indices`.
        """
        self._check_settings()
        a = _as_input(x)
        if self.kind == "conv":
            return im2col(a, self.kernel_shape, self.strides, self.pads, self.dilations,
                          self.group, rows=indices)
        r = self._dense_rows(a)
        if indices is not None:
            idx = np.asarray(indices)
            if idx.dtype.kind not in "iu" or idx.ndim != 1:
                raise ValidationError("indices must be a 1-d integer array")
            if idx.size and (idx.min() < 0 or idx.max() >= r.shape[0]):
                raise ValidationError(f"indices must be in [0, {r.shape[0]})")
            r = r[idx]
        return np.ascontiguousarray(r)[None]

    def sample_rows(self, x: Any, max_rows: Optional[int], random_state: Any = None) -> np.ndarray:
        """At most ``max_rows`` random rows of ``x``: ``rows(x, row_indices(...))``."""
        return self.rows(x, row_indices(self.n_rows(x), max_rows, random_state))

    # -- accumulation ---------------------------------------------------------
    def update(self, x: Any) -> "HessianAccumulator":
        """Add the rows of input batch ``x`` to the sums. Returns ``self``."""
        self._check_settings()
        a = _as_input(x)
        if self.kind == "conv":
            shape4, k, s, p, d, g = self._conv_geo(a.shape)
            _, _, n, K = _core.conv_output_shape(shape4, k, s, p, d, g)
            G = g
        else:
            a = self._dense_rows(a)
            n, K, G = a.shape[0], a.shape[1], 1
        if not hasattr(self, "_sums"):
            self._sums = np.zeros((G, K, K), np.float64)
            self.n_rows_ = 0
            self.n_samples_ = 0
        elif self._sums.shape != (G, K, K):
            raise ShapeError(f"x gives {G} group(s) of {K} inputs, but earlier batches gave "
                             f"{self._sums.shape[0]} of {self._sums.shape[1]}")
        try:
            if self.kind == "conv":
                _core.accumulate_conv_gram(a.reshape(shape4), k, s, p, d, g, self._sums)
            else:
                _core.accumulate_gram(a[None], self._sums)
        except ValidationError as e:
            if "NaN or Inf" in str(e):
                raise ValidationError("x contains NaN or Inf values") from None
            raise
        self.n_rows_ += int(n)
        self.n_samples_ += int(a.shape[0])
        return self

    def reset(self) -> "HessianAccumulator":
        """Forget every batch. Returns ``self``."""
        for attr in ("_sums", "n_rows_", "n_samples_"):
            if hasattr(self, attr):
                delattr(self, attr)
        return self

    @property
    def hessian_(self) -> np.ndarray:
        if not hasattr(self, "_sums"):
            raise NotFittedError("this HessianAccumulator has no data yet; call update() first")
        if self.n_rows_ == 0:
            return np.zeros_like(self._sums)
        return self._sums * (2.0 / self.n_rows_)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in
                         ("kind", "kernel_shape", "strides", "pads", "dilations", "group"))
        return f"HessianAccumulator({args})"
