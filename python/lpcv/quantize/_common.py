"""Private helpers of lpcv.quantize: input validation and the estimator base."""
from __future__ import annotations

import inspect
import numbers
from typing import Any, Dict, Optional

import numpy as np

from ..exceptions import NotFittedError, ValidationError

__all__ = ["as_float32", "check_bits", "check_axis", "check_int", "check_bool",
           "check_choice", "Estimator", "nan_message"]


def as_float32(x: Any, name: str, allow_empty: bool = False) -> np.ndarray:
    """``x`` as a C-contiguous float32 array (a copy only when needed).

    Real floating arrays (float16/32/64) and lists of floats convert; bool,
    integer, complex and object data raise ``TypeError`` because converting
    them would be a guess.
    """
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must be a real floating-point array (float16, float32 or "
                        f"float64), got dtype {a.dtype}")
    if a.size == 0 and not allow_empty:
        raise ValidationError(f"{name} is empty (shape {a.shape}); nothing to quantize")
    return np.asarray(a, dtype=np.float32, order="C")  # keeps 0-d arrays 0-d


def check_finite(a: np.ndarray, name: str) -> None:
    if not np.isfinite(a).all():
        raise ValidationError(f"{name} contains NaN or Inf values")


def nan_message(err: Exception, name: str) -> Exception:
    """Renames the core's NaN/Inf error after the user's parameter."""
    if "NaN or Inf" in str(err):
        return ValidationError(f"{name} contains NaN or Inf values")
    return err


def check_int(v: Any, name: str, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ValidationError(f"{name} must be in {rng}, got {v}")
    return v


def check_bits(bits: Any, name: str = "bits") -> int:
    return check_int(bits, name, 2, 16)


def check_bool(v: Any, name: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def check_float(v: Any, name: str, lo: float, hi: float, lo_open: bool = False,
                hi_open: bool = False) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__} {v!r}")
    v = float(v)
    ok = np.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ValidationError(f"{name} must be in {lb}{lo}, {hi}{rb}, got {v}")
    return v


def check_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    axis = check_int(axis, name)
    if ndim == 0:
        raise ValidationError(f"{name}={axis} given for a 0-d array; use axis=None")
    if not -ndim <= axis < ndim:
        raise ValidationError(f"{name} must be in [{-ndim}, {ndim - 1}] for a {ndim}-d array, "
                              f"got {axis}")
    return axis % ndim


def check_choice(v: Any, name: str, choices) -> str:
    if not isinstance(v, str) or v not in choices:
        raise ValidationError(f"{name} must be one of {', '.join(map(repr, choices))}, got {v!r}")
    return v


class Estimator:
    """get_params / set_params / repr from the ``__init__`` signature (sklearn style)."""

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The settings given to ``__init__`` (``deep`` is accepted for sklearn compatibility)."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any):
        """Set settings by name; returns ``self``. Unknown names raise ``ValidationError``."""
        names = self._param_names()
        for k, v in params.items():
            if k not in names:
                raise ValidationError(f"invalid parameter {k!r} for {type(self).__name__}; "
                                      f"valid parameters are {', '.join(names)}")
            setattr(self, k, v)
        return self

    def _check_fitted(self, attr: str) -> None:
        if not hasattr(self, attr):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
