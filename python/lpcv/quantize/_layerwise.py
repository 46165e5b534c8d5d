"""Private helpers shared by the layer-wise rounding methods (GPTQ, AdaRound):
validation of the (G, M, K) weights and of the per-row quantization grid."""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from .. import _core
from ..exceptions import ShapeError, ValidationError
from ._common import check_bits, check_bool

__all__ = ["weights3", "grid", "float_array3", "reconstruction_error"]


def weights3(w: Any, name: str = "w") -> Tuple[np.ndarray, bool]:
    """``w`` as a C-contiguous float32 (G, M, K) array and whether it was 2-D.

    Only float32 is accepted: converting other dtypes silently would hide a
    precision change the caller should make explicitly.
    """
    a = np.asarray(w)
    if a.dtype != np.float32:
        raise ValidationError(f"{name} must be a float32 array, got dtype {a.dtype}")
    if a.ndim not in (2, 3):
        raise ShapeError(f"{name} must be (M, K) or (G, M, K), got shape {a.shape}")
    if a.size == 0:
        raise ShapeError(f"{name} is empty (shape {a.shape})")
    if not np.isfinite(a).all():
        raise ValidationError(f"{name} contains NaN or Inf values")
    squeeze = a.ndim == 2
    return np.ascontiguousarray(a[None] if squeeze else a), squeeze


def float_array3(x: Any, name: str, G: int, squeeze: bool, tail: Tuple[int, ...]) -> np.ndarray:
    """A float input (``x`` or ``hessian``) as C-contiguous float32 (G, *tail),
    checked against the weights' shape (2-D when the weights were 2-D)."""
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must be a real floating-point array, got dtype {a.dtype}")
    want_nd = 2 if squeeze else 3
    if a.ndim != want_nd:
        raise ShapeError(f"{name} must be {want_nd}-d like the weights, got shape {a.shape}")
    if squeeze:
        a = a[None]
    if a.shape[0] != G or any(t is not None and a.shape[i + 1] != t for i, t in enumerate(tail)):
        exp = ", ".join("N" if t is None else str(t) for t in tail)
        exp = f"({exp})" if squeeze else f"({G}, {exp})"
        raise ShapeError(f"{name} must have shape {exp}, got {np.shape(x)}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValidationError(f"{name} contains NaN or Inf values")
    return a


def grid(scale: Any, zero_point: Any, G: int, M: int, bits: Any, signed: Any,
         narrow_range: Any = False):
    """(scale float32 [G*M], zero_point int32 [G*M], core scheme) per weight row.

    ``scale`` / ``zero_point``: a scalar, ``(M,)`` (G = 1), ``(G, M)`` or any
    array of G*M values in (group, row) order.
    """
    scheme = _core.QuantScheme(check_bits(bits), check_bool(signed, "signed"), False,
                               check_bool(narrow_range, "narrow_range"), False)
    n = G * M
    s = np.asarray(scale)
    if s.dtype.kind not in "iuf":
        raise TypeError(f"scale must be a real number or array, got dtype {s.dtype}")
    if s.size not in (1, n):
        raise ShapeError(f"scale must be a scalar or have {n} values (shape ({G}, {M}) or "
                         f"({M},) for 2-d weights), got shape {s.shape}")
    s = np.ascontiguousarray(np.broadcast_to(s.astype(np.float32).reshape(-1), (n,)))
    z = np.asarray(zero_point)
    if z.dtype.kind not in "iu":
        raise TypeError(f"zero_point must be an integer or integer array, got dtype {z.dtype}")
    if z.size not in (1, n):
        raise ShapeError(f"zero_point must be a scalar or have {n} values, got shape {z.shape}")
    if z.size and (z.min() < -(2 ** 31) or z.max() >= 2 ** 31):
        raise ValidationError("zero_point values must fit in int32")
    z = np.ascontiguousarray(np.broadcast_to(z.astype(np.int32).reshape(-1), (n,)))
    try:
        _core.quant_check_params(s, z, scheme)
    except ValidationError as e:
        raise ValidationError(f"invalid scale/zero_point: {e}") from None
    return s, z, scheme


def reconstruction_error(w: np.ndarray, w_hat: np.ndarray, hessian: np.ndarray) -> float:
    """Output reconstruction error ``sum_g tr((W_g - W^_g) H_g (W_g - W^_g)^T)``.

    With ``H = 2 X^T X / n`` this is ``2 / n * ||X (W - W^)^T||^2``: twice the
    mean squared output error per row. Computed in float64.

    Parameters
    ----------
    w, w_hat : array_like, shape (M, K) or (G, M, K)
        Float weights and (dequantized) approximations.
    hessian : array_like, shape (K, K) or (G, K, K)

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize.gptq import reconstruction_error
    >>> reconstruction_error(np.ones((1, 2)), np.zeros((1, 2)), 2 * np.eye(2))
    4.0
    """
    d = np.asarray(w, np.float64) - np.asarray(w_hat, np.float64)
    h = np.asarray(hessian, np.float64)
    if d.ndim == 2:
        d, h = d[None], h[None]
    return float(np.sum((d @ h) * d))
