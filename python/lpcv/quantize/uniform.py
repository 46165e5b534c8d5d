"""Uniform (affine) quantization of arrays: fake-quantization, integer
quantization, dequantization, int4 packing and the :class:`UniformQuantizer`
estimator.

Arithmetic (the ONNX ``QuantizeLinear`` / ``DequantizeLinear`` definition, so
that lpcv's simulation, its int8 runtime and onnxruntime agree)::

    q  = clip(round(x / scale) + zero_point, qmin, qmax)
    x' = (q - zero_point) * scale

``round`` is **round half to even** (``np.rint``; 0.5 -> 0, 1.5 -> 2, 2.5 -> 2)
and ``x / scale`` is a float32 division. PyTorch multiplies by ``1/scale``
instead, which can differ by one step on rare exact ties.

Grids (``bits`` = b, 2..16):

==================  ========================  ==========================
signed              full range                narrow range
==================  ========================  ==========================
True                [-2^(b-1), 2^(b-1) - 1]   [-2^(b-1) + 1, 2^(b-1) - 1]
False               [0, 2^b - 1]              [1, 2^b - 1]
==================  ========================  ==========================

Scales from the data's range [lo, hi] (per tensor, channel or group), in
float32 arithmetic:

* symmetric, signed: ``scale = max(|lo|, |hi|) / qmax``, ``zero_point = 0``
  (so int8 maps ±max|x| to ±127 with or without narrow range);
* symmetric, unsigned: ``scale = max(hi, 0) / qmax``, ``zero_point = 0``
  (for non-negative data such as ReLU outputs; negative values clip to 0);
* asymmetric: the range is widened to contain 0, ``lo' = min(lo, 0)``,
  ``hi' = max(hi, 0)``, ``scale = (hi' - lo') / (qmax - qmin)`` and
  ``zero_point = clip(qmin - round(lo' / scale), qmin, qmax)``;
* ``power_of_two=True`` rounds each scale up to ``2**ceil(log2(scale))``;
* a constant block (all elements equal to c) gets ``scale = |c|`` (1 when
  c = 0), so constant and all-zero tensors round-trip exactly (except for
  negative c with a symmetric unsigned grid, and with ``power_of_two``).

Granularity: ``axis=None`` quantizes per tensor; ``axis=k`` per channel along
axis k (one scale per index of that axis, e.g. ``axis=0`` for the output
channels of an OIHW convolution weight); ``group_size=G`` per group: groups of
G consecutive elements along ``axis`` (default the last axis) share a scale,
and the scales have the input's shape with that axis divided by G.

Integer dtypes: int8/uint8 for bits <= 8, int16/uint16 for 9..16 bits. Values
of 4 or fewer bits can be stored two per byte with :func:`pack_int4`.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _core
from ..exceptions import ValidationError
from ._common import (Estimator, as_float32, check_axis, check_bits, check_bool,
                      check_choice, check_int, nan_message)

__all__ = ["fake_quantize", "quantize", "dequantize", "pack_int4", "unpack_int4",
           "int_range", "UniformQuantizer"]

GRANULARITIES = ("per_tensor", "per_channel", "per_group")


def int_range(bits: int = 8, signed: bool = True, narrow_range: bool = False) -> Tuple[int, int]:
    """The integer grid ``(qmin, qmax)`` of a scheme.

    Examples
    --------
    >>> int_range(8), int_range(8, narrow_range=True), int_range(4, signed=False)
    ((-128, 127), (-127, 127), (0, 15))
    """
    s = _scheme(bits, True, signed, narrow_range, False)
    return tuple(_core.quant_int_range(s))


def _scheme(bits, symmetric, signed, narrow_range, power_of_two):
    return _core.QuantScheme(check_bits(bits), check_bool(signed, "signed"),
                             check_bool(symmetric, "symmetric"),
                             check_bool(narrow_range, "narrow_range"),
                             check_bool(power_of_two, "power_of_two"))


def _layout(shape: Sequence[int], granularity: str, axis, group_size):
    """(granularity, axis, group, param_shape) after validation."""
    ndim = len(shape)
    if granularity == "per_tensor":
        return "per_tensor", 0, 1, ()
    if axis is None:
        if granularity == "per_channel":
            raise ValidationError("axis is required for per-channel quantization")
        axis = -1
    ax = check_axis(axis, ndim)
    if granularity == "per_channel":
        return "per_channel", ax, 1, (int(shape[ax]),)
    if group_size is None:
        raise ValidationError("group_size is required for per-group quantization")
    g = check_int(group_size, "group_size", 1)
    if shape[ax] % g:
        raise ValidationError(f"group_size={g} does not divide the extent {shape[ax]} of "
                              f"axis {ax} (shape {tuple(shape)})")
    pshape = list(shape)
    pshape[ax] = shape[ax] // g
    return "per_group", ax, g, tuple(int(d) for d in pshape)


def _infer_granularity(axis, group_size) -> str:
    if group_size is not None:
        return "per_group"
    return "per_tensor" if axis is None else "per_channel"


def _scale_array(scale, n: int, pshape) -> np.ndarray:
    """User-given scales as a flat float32 array of ``n`` values."""
    s = np.asarray(scale)
    if s.dtype.kind not in "iuf":
        raise TypeError(f"scale must be a real number or array, got dtype {s.dtype}")
    if s.size != n:
        raise ValidationError(f"scale must have {n} element(s) (shape {pshape}), "
                              f"got shape {s.shape}")
    return np.ascontiguousarray(s, dtype=np.float32).reshape(-1)


def _user_params(scale, zero_point, pshape, scheme) -> Tuple[np.ndarray, np.ndarray]:
    n = int(np.prod(pshape, dtype=np.int64))
    s = _scale_array(scale, n, pshape)
    if zero_point is None:
        if not scheme.symmetric:
            raise ValidationError("zero_point is required with scale when symmetric=False")
        z = np.zeros(n, np.int32)
    else:
        z = np.asarray(zero_point)
        if z.dtype.kind not in "iu":
            raise TypeError(f"zero_point must be an integer or integer array, got dtype {z.dtype}")
        if z.size != n:
            raise ValidationError(f"zero_point must have {n} element(s) (shape {pshape}), "
                                  f"got shape {z.shape}")
        if z.size and (z.min() < -(2 ** 31) or z.max() >= 2 ** 31):
            raise ValidationError("zero_point values must fit in int32")
        z = np.ascontiguousarray(z, dtype=np.int32).reshape(-1)
    try:
        _core.quant_check_params(s, z, scheme)
    except ValidationError as e:
        raise ValidationError(f"invalid scale/zero_point: {e}") from None
    return s, z


def _prepare(w, bits, axis, symmetric, signed, narrow_range, group_size, power_of_two,
             scale, zero_point, granularity=None):
    x = as_float32(w, "w")
    scheme = _scheme(bits, symmetric, signed, narrow_range, power_of_two)
    gran = granularity or _infer_granularity(axis, group_size)
    gran, ax, g, pshape = _layout(x.shape, gran, axis, group_size)
    if scale is None:
        if zero_point is not None:
            raise ValidationError("zero_point given without scale")
        try:
            lo, hi = _core.quant_min_max(x, gran, ax, g)
        except ValidationError as e:
            raise nan_message(e, "w") from None
        s, z = _core.quant_params(lo, hi, scheme)
    else:
        s, z = _user_params(scale, zero_point, pshape, scheme)
    return x, scheme, gran, ax, g, pshape, s, z


def fake_quantize(w: Any, bits: int = 8, axis: Optional[int] = None, symmetric: bool = True,
                  signed: bool = True, narrow_range: bool = False,
                  group_size: Optional[int] = None, power_of_two: bool = False,
                  scale: Any = None, zero_point: Any = None,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """Quantize then dequantize: the float32 values a quantized tensor represents.

    Parameters
    ----------
    w : array_like of float
        The tensor (any float dtype; computed in float32). Not modified.
    bits : int, default 8
        Bit width, 2..16.
    axis : int, optional
        Per-channel quantization along this axis; ``None`` means per tensor
        (or, with ``group_size``, groups along the last axis).
    symmetric, signed, narrow_range, power_of_two : bool
        The grid; see the module documentation.
    group_size : int, optional
        Per-group quantization: groups of this many consecutive elements along
        ``axis`` share one scale. Must divide that axis.
    scale, zero_point : array_like, optional
        Use these parameters (shape: ``()`` per tensor, ``(C,)`` per channel, the
        input's shape with the axis divided by ``group_size`` per group) instead
        of computing them from the data's min/max. ``zero_point`` defaults to 0
        for symmetric schemes.
    out : ndarray, optional
        Write the result here (C-contiguous float32 of w's shape; may be ``w``
        itself to work in place). Avoids allocating a new array.

    Returns
    -------
    ndarray of float32, the shape of ``w``.

    Raises
    ------
    TypeError
        Integer, bool or complex ``w``.
    ValidationError
        Empty ``w``, NaN/Inf values, bits outside 2..16, a bad ``axis`` or
        ``group_size``, or invalid ``scale`` / ``zero_point``.

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import fake_quantize
    >>> w = np.array([[-1.0, 0.5, 0.26], [0.1, -0.2, 0.3]], dtype=np.float32)
    >>> fake_quantize(w, bits=2, axis=0)    # grid {-2,-1,0,1} * max|row|; 0.5 -> 0 (half to even)
    array([[-1. ,  0. ,  0. ],
           [ 0. , -0.3,  0.3]], dtype=float32)
    >>> bool(np.abs(fake_quantize(w, bits=8) - w).max() <= 1.0 / 127 / 2)
    True
    """
    x, scheme, gran, ax, g, _, s, z = _prepare(w, bits, axis, symmetric, signed, narrow_range,
                                               group_size, power_of_two, scale, zero_point)
    try:
        return _core.quant_fake_quantize(x, s, z, gran, ax, g, scheme, out)
    except ValidationError as e:
        raise nan_message(e, "w") from None


def quantize(w: Any, bits: int = 8, axis: Optional[int] = None, symmetric: bool = True,
             signed: bool = True, narrow_range: bool = False, group_size: Optional[int] = None,
             power_of_two: bool = False, scale: Any = None,
             zero_point: Any = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize to integers: ``(q, scale, zero_point)``.

    Parameters are those of :func:`fake_quantize`.

    Returns
    -------
    q : ndarray
        int8 / uint8 (bits <= 8) or int16 / uint16 (bits > 8), the shape of ``w``.
    scale : ndarray of float32
        Shape ``()`` per tensor, ``(C,)`` per channel, ``w.shape`` with the
        axis divided by ``group_size`` per group.
    zero_point : ndarray of int32, the shape of ``scale``.

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import quantize, dequantize
    >>> w = np.array([-1.0, -0.5, 0.0, 0.25, 1.0], dtype=np.float32)
    >>> q, scale, zp = quantize(w, bits=8)
    >>> q
    array([-127,  -64,    0,   32,  127], dtype=int8)
    >>> bool(scale == np.float32(1.0) / np.float32(127)), int(zp)
    (True, 0)
    >>> q, scale, zp = quantize(w, bits=8, symmetric=False, signed=False)
    >>> q, int(zp)
    (array([  0,  63, 127, 159, 254], dtype=uint8), 127)
    >>> bool(np.abs(dequantize(q, scale, zp) - w).max() <= scale / 2)
    True
    """
    x, scheme, gran, ax, g, pshape, s, z = _prepare(w, bits, axis, symmetric, signed,
                                                    narrow_range, group_size, power_of_two,
                                                    scale, zero_point)
    try:
        q = _core.quant_quantize(x, s, z, gran, ax, g, scheme)
    except ValidationError as e:
        raise nan_message(e, "w") from None
    return q, s.reshape(pshape), z.reshape(pshape)


_INT_DTYPES = (np.int8, np.uint8, np.int16, np.uint16)


def dequantize(q: Any, scale: Any, zero_point: Any = None, axis: Optional[int] = None,
               group_size: Optional[int] = None) -> np.ndarray:
    """Integers back to float32: ``(q - zero_point) * scale``.

    Parameters
    ----------
    q : ndarray of int8, uint8, int16 or uint16
        Quantized values (as returned by :func:`quantize`). Other integer
        dtypes are converted when every value fits int16 or uint16.
    scale, zero_point : array_like
        As returned by :func:`quantize`; ``zero_point`` defaults to 0.
    axis, group_size : int, optional
        The granularity ``q`` was quantized with (see :func:`fake_quantize`).

    Returns
    -------
    ndarray of float32, the shape of ``q``.

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import dequantize
    >>> dequantize(np.array([[-2, 4], [1, 0]], np.int8), [0.5, 0.25], axis=0)
    array([[-1.  ,  2.  ],
           [ 0.25,  0.  ]], dtype=float32)
    """
    a = np.asarray(q)
    if a.dtype.kind not in "iu":
        raise TypeError(f"q must be an integer array, got dtype {a.dtype}")
    if a.size == 0:
        raise ValidationError(f"q is empty (shape {a.shape})")
    if a.dtype.type not in _INT_DTYPES:
        lo, hi = int(a.min()), int(a.max())
        if -(2 ** 15) <= lo and hi < 2 ** 15:
            a = a.astype(np.int16)
        elif 0 <= lo and hi < 2 ** 16:
            a = a.astype(np.uint16)
        else:
            raise ValidationError(f"q values [{lo}, {hi}] do not fit 16-bit integers")
    a = np.ascontiguousarray(a)
    gran, ax, g, pshape = _layout(a.shape, _infer_granularity(axis, group_size), axis,
                                  group_size)
    n = int(np.prod(pshape, dtype=np.int64))
    s = _scale_array(scale, n, pshape)
    if zero_point is None:
        z = np.zeros(n, np.int32)
    else:
        z = np.asarray(zero_point)
        if z.dtype.kind not in "iu":
            raise TypeError(f"zero_point must be an integer array, got dtype {z.dtype}")
        if z.size != n:
            raise ValidationError(f"zero_point must have {n} element(s), got shape {z.shape}")
        z = np.ascontiguousarray(z, dtype=np.int32).reshape(-1)
    return _core.quant_dequantize(a, s, z, gran, ax, g)


def pack_int4(q: Any, signed: bool = True) -> np.ndarray:
    """Pack 4-bit integers two per byte, low nibble first.

    Byte ``k`` holds element ``2k`` (C order) in bits 0–3 and element ``2k+1``
    in bits 4–7, in two's complement when ``signed`` (the ONNX INT4 / UINT4
    layout). An odd count leaves the last high nibble 0.

    Parameters
    ----------
    q : array_like of int
        Values in [-8, 7] (``signed``) or [0, 15].
    signed : bool, default True

    Returns
    -------
    ndarray of uint8, shape ``((q.size + 1) // 2,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import pack_int4, unpack_int4
    >>> p = pack_int4(np.array([1, -1, 7], np.int8))
    >>> p, [hex(b) for b in p]
    (array([241,   7], dtype=uint8), ['0xf1', '0x7'])
    >>> unpack_int4(p, 3)
    array([ 1, -1,  7], dtype=int8)
    """
    signed = check_bool(signed, "signed")
    a = np.asarray(q)
    if a.dtype.kind not in "iu":
        raise TypeError(f"q must be an integer array, got dtype {a.dtype}")
    lo, hi = (-8, 7) if signed else (0, 15)
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValidationError(f"q values must be in [{lo}, {hi}] for signed={signed}, got "
                              f"[{a.min()}, {a.max()}]")
    return _core.quant_pack_int4(np.ascontiguousarray(a, dtype=np.int8).reshape(-1), signed)


def unpack_int4(packed: Any, shape: Union[int, Sequence[int]], signed: bool = True) -> np.ndarray:
    """Inverse of :func:`pack_int4`: int8 values of the given shape (or count)."""
    signed = check_bool(signed, "signed")
    p = np.asarray(packed)
    if p.dtype != np.uint8:
        raise TypeError(f"packed must be a uint8 array, got dtype {p.dtype}")
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    if p.size != (n + 1) // 2:
        raise ValidationError(f"packed has {p.size} bytes; {n} values need {(n + 1) // 2}")
    return _core.quant_unpack_int4(np.ascontiguousarray(p).reshape(-1), n, signed).reshape(shape)


class UniformQuantizer(Estimator):
    """Uniform quantizer estimator: learns scales and zero points in ``fit``.

    Parameters
    ----------
    bits : int, default 8
        Bit width, 2..16.
    granularity : {"per_tensor", "per_channel", "per_group"}, default "per_tensor"
    axis : int, default 0
        Channel axis (per_channel) or grouped axis (per_group).
    group_size : int, optional
        Group length along ``axis``; required for per_group.
    symmetric, signed, narrow_range, power_of_two : bool
        The grid; see :mod:`lpcv.quantize.uniform`.

    Attributes
    ----------
    scale_ : ndarray of float32
    zero_point_ : ndarray of int32
    qmin_, qmax_ : int
        The integer grid.
    shape_ : tuple
        Shape of the fitted array; ``transform`` needs the same parameter layout.

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize import UniformQuantizer
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    >>> uq = UniformQuantizer(bits=4, granularity="per_channel", axis=0).fit(w)
    >>> uq.scale_.shape, uq.qmin_, uq.qmax_
    ((4,), -8, 7)
    >>> q = uq.transform(w)
    >>> q.dtype, bool(np.all(uq.inverse_transform(q) == uq.fake_quantize(w)))
    (dtype('int8'), True)
    """

    def __init__(self, bits: int = 8, granularity: str = "per_tensor", axis: int = 0,
                 group_size: Optional[int] = None, symmetric: bool = True, signed: bool = True,
                 narrow_range: bool = False, power_of_two: bool = False):
        self.bits = bits
        self.granularity = granularity
        self.axis = axis
        self.group_size = group_size
        self.symmetric = symmetric
        self.signed = signed
        self.narrow_range = narrow_range
        self.power_of_two = power_of_two

    def _settings(self, shape):
        gran = check_choice(self.granularity, "granularity", GRANULARITIES)
        scheme = _scheme(self.bits, self.symmetric, self.signed, self.narrow_range,
                         self.power_of_two)
        if gran == "per_group" and self.group_size is None:
            raise ValidationError("group_size is required when granularity='per_group'")
        return scheme, _layout(shape, gran, self.axis, self.group_size)

    def fit(self, w: Any, y: Any = None) -> "UniformQuantizer":
        """Learn ``scale_`` and ``zero_point_`` from the min/max of ``w``."""
        x = as_float32(w, "w")
        scheme, (gran, ax, g, pshape) = self._settings(x.shape)
        try:
            lo, hi = _core.quant_min_max(x, gran, ax, g)
        except ValidationError as e:
            raise nan_message(e, "w") from None
        s, z = _core.quant_params(lo, hi, scheme)
        self.scale_ = s.reshape(pshape)
        self.zero_point_ = z.reshape(pshape)
        self.qmin_, self.qmax_ = (int(v) for v in _core.quant_int_range(scheme))
        self.shape_ = tuple(x.shape)
        return self

    def _check_input(self, shape, what):
        self._check_fitted("scale_")
        scheme, (gran, ax, g, pshape) = self._settings(shape)
        if pshape != self.scale_.shape:
            raise ValidationError(f"{what} of shape {tuple(shape)} needs {pshape} parameters, "
                                  f"but the quantizer was fitted on shape {self.shape_} "
                                  f"({self.scale_.shape} parameters)")
        return scheme, gran, ax, g

    def transform(self, w: Any) -> np.ndarray:
        """Quantize ``w`` to integers with the learned parameters."""
        x = as_float32(w, "w")
        scheme, gran, ax, g = self._check_input(x.shape, "w")
        try:
            return _core.quant_quantize(x, self.scale_.reshape(-1), self.zero_point_.reshape(-1),
                                        gran, ax, g, scheme)
        except ValidationError as e:
            raise nan_message(e, "w") from None

    def fit_transform(self, w: Any, y: Any = None) -> np.ndarray:
        """``fit(w)`` then ``transform(w)``."""
        return self.fit(w).transform(w)

    def inverse_transform(self, q: Any) -> np.ndarray:
        """Dequantize integers produced by :meth:`transform`."""
        self._check_fitted("scale_")
        a = np.asarray(q)
        self._check_input(a.shape, "q")
        gran = self.granularity
        axis = None if gran == "per_tensor" else self.axis
        return dequantize(a, self.scale_, self.zero_point_, axis=axis,
                          group_size=self.group_size if gran == "per_group" else None)

    def fake_quantize(self, w: Any) -> np.ndarray:
        """Quantize and dequantize ``w`` with the learned parameters (float32)."""
        x = as_float32(w, "w")
        scheme, gran, ax, g = self._check_input(x.shape, "w")
        try:
            return _core.quant_fake_quantize(x, self.scale_.reshape(-1),
                                             self.zero_point_.reshape(-1), gran, ax, g, scheme)
        except ValidationError as e:
            raise nan_message(e, "w") from None
