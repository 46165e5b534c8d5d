"""Range calibration in constant memory: choose the clipping range of a
tensor (usually an activation) from a stream of batches.

:class:`Calibrator` never keeps the data. It tracks the minimum and maximum
and, for the histogram methods, a histogram with a fixed number of bins whose
range grows when new data falls outside it. Growth is **exact re-binning**:
the new bin width is an integer multiple k of the old one and the new lower
edge lies on the old grid, so each old bin falls entirely inside one new bin
and its count moves there; k is the smallest integer that makes the range
fit. (For ``method="entropy"`` the histogram stays centred on zero,
``[-R, R]``, so that it folds exactly into a histogram of ``|x|``.)

Methods (``compute_range`` returns ``(lo, hi)``; ``scale_zero_point`` turns
it into quantization parameters with :func:`lpcv.quantize.quantize`'s
formulas):

``"minmax"``
    The smallest and largest values seen.
``"moving_average"``
    Exponential moving averages of each batch's min and max:
    ``m = momentum * m + (1 - momentum) * batch_value`` (the first batch
    initialises them).
``"percentile"``
    The ``100 - percentile`` and ``percentile`` percentiles, linearly
    interpolated inside the histogram bin where the cumulative count crosses
    them (so within one bin width of the exact percentile).
``"mse"``
    The clipping range minimising the expected Lp error
    ``sum_k n_k |c_k - Q(c_k)|^p`` over the histogram (bin centres c_k,
    counts n_k, Q the quantizer of ``bits`` on that range), searched over 512
    candidates ``alpha * [min, max]`` (symmetric: ``[-alpha * amax,
    alpha * amax]``), alpha = 1/512 .. 1.
``"entropy"``
    TensorRT's KL-divergence calibration on the histogram of ``|x|``: for
    each candidate threshold (a bin edge), the clipped reference distribution
    P (outliers added to the last bin) is compared with its quantization Q
    into ``2**(bits-1)`` levels (``2**bits`` when unsigned); the threshold T
    minimising KL(P || Q) gives ``(max(min, -T), min(max, T))``. The search
    costs O(bins²) operations (about 0.5 M for 2048 bins).

Constant data (every value equal to c) gives ``(c, c)`` for every method,
which :meth:`Calibrator.scale_zero_point` maps to scale ``|c|`` (exact
round trip). Empty batches and NaN/Inf values raise ``ValidationError``.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .. import _core
from ..exceptions import ValidationError
from ._common import (Estimator, as_float32, check_bits, check_bool, check_choice,
                      check_float, check_int, nan_message)

__all__ = ["Calibrator", "histogram", "METHODS"]

METHODS = ("minmax", "moving_average", "percentile", "mse", "entropy")
_HIST_METHODS = ("percentile", "mse", "entropy")
_MSE_CANDIDATES = 512


def histogram(x: Any, bins: int = 2048, range: Optional[Tuple[float, float]] = None
              ) -> Tuple[np.ndarray, np.ndarray]:
    """Histogram of ``x`` with equal-width bins (a fast, parallel ``np.histogram``).

    Parameters
    ----------
    x : array_like of float
        Data (any shape; computed in float32).
    bins : int, default 2048
        Number of bins.
    range : (float, float), optional
        ``(lo, hi)``; default ``(x.min(), x.max())`` (widened by 0.5 on each
        side when they are equal, as NumPy does). Values outside are ignored.

    Returns
    -------
    counts : ndarray of int64, shape (bins,)
    edges : ndarray of float64, shape (bins + 1,)
        ``edges[k] = lo + k * (hi - lo) / bins``, ``edges[-1] = hi``. Value v is
        in bin k when ``edges[k] <= v < edges[k+1]``; the last bin includes
        ``hi``. ``np.histogram(x, bins=edges)`` gives the same counts.

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import histogram
    >>> counts, edges = histogram(np.array([0.0, 0.1, 0.5, 0.9, 1.0]), bins=2)
    >>> counts, edges
    (array([2, 3]), array([0. , 0.5, 1. ]))
    """
    a = as_float32(x, "x")
    nb = check_int(bins, "bins", 1)
    if range is None:
        try:
            mn, mx = _core.quant_min_max(a, "per_tensor", 0, 1)
        except ValidationError as e:
            raise nan_message(e, "x") from None
        lo, hi = float(mn[0]), float(mx[0])
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
    else:
        try:
            lo, hi = (float(v) for v in range)
        except (TypeError, ValueError):
            raise TypeError(f"range must be a pair of numbers, got {range!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValidationError(f"range must be finite with lo < hi, got {range!r}")
    counts = np.zeros(nb, np.int64)
    try:
        _core.calib_histogram_add(a.reshape(-1), lo, hi, counts)
    except ValidationError as e:
        raise nan_message(e, "x") from None
    return counts, _core.calib_edges(lo, hi, nb)


class Calibrator(Estimator):
    """Streaming range calibration (constant memory).

    Parameters
    ----------
    method : {"minmax", "moving_average", "percentile", "mse", "entropy"}
        See the module documentation.
    bits : int, default 8
        Bit width of the target quantizer (2..16).
    symmetric : bool, default True
        Symmetric (zero point 0) or asymmetric target quantizer.
    signed : bool, default True
        Signed or unsigned integer grid of the target quantizer.
    percentile : float, default 99.99
        For ``method="percentile"``, in [50, 100].
    momentum : float, default 0.9
        For ``method="moving_average"``, in [0, 1).
    bins : int, default 2048
        Histogram bins (even, >= 2). ``entropy`` bins ``|x|`` into ``bins/2``
        bins and needs at least as many as quantization levels:
        ``bins >= 2**bits`` (signed) or ``2**(bits+1)`` (unsigned).
    p : float, default 2.0
        Exponent of the error for ``method="mse"``.

    Attributes
    ----------
    min_, max_ : float
        Extremes of all data seen.
    n_samples_seen_, n_batches_ : int
    histogram_ : ndarray of int64 or None
        Counts of the streaming histogram (histogram methods).
    bin_edges_ : ndarray of float64 or None
    ema_min_, ema_max_ : float
        Moving averages (``method="moving_average"``).

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import Calibrator
    >>> rng = np.random.default_rng(0)
    >>> cal = Calibrator(method="percentile", percentile=99.0)
    >>> for _ in range(4):
    ...     _ = cal.update(rng.standard_normal(10_000))
    >>> lo, hi = cal.compute_range()
    >>> bool(-2.5 < lo < -2.2 and 2.2 < hi < 2.5)   # N(0,1): 1% and 99% at -/+2.33
    True
    >>> scale, zero_point = cal.scale_zero_point()
    >>> bool(np.isclose(scale, max(-lo, hi) / 127)), zero_point
    (True, 0)
    """

    def __init__(self, method: str = "minmax", bits: int = 8, symmetric: bool = True,
                 signed: bool = True, percentile: float = 99.99, momentum: float = 0.9,
                 bins: int = 2048, p: float = 2.0):
        self.method = method
        self.bits = bits
        self.symmetric = symmetric
        self.signed = signed
        self.percentile = percentile
        self.momentum = momentum
        self.bins = bins
        self.p = p

    # -- settings -------------------------------------------------------
    def _validated(self):
        method = check_choice(self.method, "method", METHODS)
        scheme = _core.QuantScheme(check_bits(self.bits), check_bool(self.signed, "signed"),
                                   check_bool(self.symmetric, "symmetric"), False, False)
        check_float(self.percentile, "percentile", 50.0, 100.0)
        check_float(self.momentum, "momentum", 0.0, 1.0, hi_open=True)
        check_float(self.p, "p", 0.0, 1e3, lo_open=True)
        bins = check_int(self.bins, "bins", 2)
        if bins % 2:
            raise ValidationError(f"bins must be even, got {bins}")
        if method == "entropy":
            nq = self._quant_bins()
            if bins < 2 * nq:
                raise ValidationError(f"method='entropy' with bits={self.bits} needs "
                                      f"bins >= {2 * nq} (|x| is binned into bins/2 bins, "
                                      f"at least {nq} quantization levels), got {bins}")
        return method, scheme, bins

    def _quant_bins(self) -> int:
        return 2 ** (self.bits - 1) if self.signed else 2 ** self.bits

    # -- streaming ---------------------------------------------------------
    def reset(self) -> "Calibrator":
        """Forget all data seen (keeps the settings)."""
        for k in ("min_", "max_", "n_samples_seen_", "n_batches_", "histogram_",
                  "bin_edges_", "ema_min_", "ema_max_", "_range"):
            self.__dict__.pop(k, None)
        return self

    def update(self, batch: Any) -> "Calibrator":
        """Add a batch of values (any shape, float). The data are not kept.

        Raises
        ------
        TypeError
            Non-float data.
        ValidationError
            Empty batch, NaN/Inf values, invalid settings.
        """
        method, scheme, bins = self._validated()
        x = as_float32(batch, "batch").reshape(-1)
        try:
            mn, mx = _core.quant_min_max(x, "per_tensor", 0, 1)
        except ValidationError as e:
            raise nan_message(e, "batch") from None
        bmin, bmax = float(mn[0]), float(mx[0])
        first = not hasattr(self, "min_")
        if first:
            self.min_, self.max_ = bmin, bmax
            self.n_samples_seen_, self.n_batches_ = 0, 0
            self.histogram_ = None
            self.bin_edges_ = None
            if method == "moving_average":
                self.ema_min_, self.ema_max_ = bmin, bmax
        else:
            self.min_, self.max_ = min(self.min_, bmin), max(self.max_, bmax)
            if method == "moving_average":
                m = float(self.momentum)
                self.ema_min_ = m * self.ema_min_ + (1.0 - m) * bmin
                self.ema_max_ = m * self.ema_max_ + (1.0 - m) * bmax
        if method in _HIST_METHODS:
            zc = method == "entropy"
            if self.histogram_ is None:
                if zc:
                    r = max(abs(bmin), abs(bmax))
                    lo, hi = (-r, r) if r > 0 else (-1e-30, 1e-30)
                else:
                    lo, hi = bmin, bmax
                    if lo == hi:
                        hi = lo + max(abs(lo) * 2.0 ** -20, 1e-30)
                counts = np.zeros(bins, np.int64)
            else:
                counts = self.histogram_
                lo, hi = self._range
                if bmin < lo or bmax > hi:
                    counts, lo, hi = _core.calib_grow(counts, lo, hi, bmin, bmax, zc)
            _core.calib_histogram_add(x, lo, hi, counts)
            self.histogram_ = counts
            self._range = (lo, hi)
            self.bin_edges_ = _core.calib_edges(lo, hi, bins)
        self.n_samples_seen_ += int(x.size)
        self.n_batches_ += 1
        return self

    def fit(self, batches: Any, progress: bool = True) -> "Calibrator":
        """Reset, then :meth:`update` with every batch.

        Parameters
        ----------
        batches : ndarray or iterable of ndarray
            One array (a single batch) or an iterable of batches (a list, a
            generator, a data loader yielding arrays).
        progress : bool, default True
            Show a tqdm progress bar.
        """
        from tqdm.auto import tqdm

        self.reset()
        if isinstance(batches, np.ndarray) or np.isscalar(batches):
            batches = [batches]
        total = len(batches) if hasattr(batches, "__len__") else None
        for b in tqdm(batches, total=total, desc="calibrating", disable=not progress,
                      leave=False):
            self.update(b)
        if not hasattr(self, "min_"):
            raise ValidationError("batches is empty: no data to calibrate on")
        return self

    # -- results -------------------------------------------------------------
    def compute_range(self) -> Tuple[float, float]:
        """The calibrated clipping range ``(lo, hi)`` in data units."""
        self._check_fitted("min_")
        method, scheme, bins = self._validated()
        if self.min_ == self.max_:
            return float(self.min_), float(self.max_)
        if method == "minmax":
            return float(self.min_), float(self.max_)
        if method == "moving_average":
            return float(self.ema_min_), float(self.ema_max_)
        if self.histogram_ is None:
            raise ValidationError(f"method was changed to {method!r} after data was seen; "
                                  "call reset() and stream the data again")
        lo, hi = self._range
        if method == "percentile":
            q = float(self.percentile) / 100.0
            a = _core.calib_percentile(self.histogram_, lo, hi, 1.0 - q)
            b = _core.calib_percentile(self.histogram_, lo, hi, q)
            return max(a, self.min_), min(b, self.max_)
        if method == "mse":
            a, b = _core.calib_mse_range(self.histogram_, lo, hi, self.min_, self.max_, scheme,
                                         float(self.p), _MSE_CANDIDATES)
            return float(a), float(b)
        # entropy: fold the zero-centred histogram into a histogram of |x|
        h = self.histogram_
        half = h.size // 2
        abs_counts = np.ascontiguousarray(h[half:] + h[half - 1::-1])
        t = _core.calib_entropy_threshold(abs_counts, (hi - lo) / h.size, self._quant_bins())
        return max(self.min_, -t), min(self.max_, t)

    def scale_zero_point(self) -> Tuple[float, int]:
        """``(scale, zero_point)`` of the target quantizer on :meth:`compute_range`."""
        lo, hi = self.compute_range()
        _, scheme, _ = self._validated()
        s, z = _core.quant_params(np.array([lo], np.float32), np.array([hi], np.float32), scheme)
        return float(s[0]), int(z[0])
