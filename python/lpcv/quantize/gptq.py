"""GPTQ: Hessian-aware rounding of a layer's weights, one column at a time
(Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers", 2022).

A layer ``y = W x`` with inputs ``X`` (rows ``x``) is quantized to minimise
the reconstruction error ``||W X^T - Q X^T||^2 = tr(dW H dW^T) * n / 2`` with
``H = 2 X^T X / n`` (see :class:`lpcv.layerdata.HessianAccumulator`). Columns
are quantized in order; each column's rounding error is spread over the
columns not yet quantized through the upper Cholesky factor ``U`` of
``H^{-1}`` (the Optimal Brain Surgeon update), in blocks of ``block_size``
columns with one matrix product per block for the rest.

Details, following the paper and its reference code:

* dead inputs (``H_ii = 0``, an input that is always zero) get ``H_ii = 1`` and
  their weights are set to 0 before quantization (they never matter);
* dampening adds ``damp * mean(diag H)`` to the diagonal;
* ``act_order=True`` quantizes the columns by descending ``diag(H)`` (ties in
  the original order) and returns them in the original order;
* rounding is half-to-even on ``w / scale`` (float32), then ``+ zero_point``
  and clamping to the grid, as in :func:`lpcv.quantize.quantize`.

The computation runs in the C++ core (float32, oneDNN GEMMs, OpenMP over rows
or over groups), without the GIL.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import numpy as np

from .. import _core
from ._common import check_bool, check_float, check_int
from ._layerwise import float_array3, grid, reconstruction_error, weights3

__all__ = ["gptq", "GPTQResult", "reconstruction_error"]


@dataclass(frozen=True)
class GPTQResult:
    """What :func:`gptq` reports besides the integers.

    Attributes
    ----------
    loss : float
        GPTQ's proxy loss, the sum over all weights of ``e^2 / 2`` with
        ``e = (w - w~) / U_ii`` (the OBS increase of the reconstruction
        objective ``tr(dW H dW^T) / 2``, summed over columns).
    group_losses : ndarray of float64, shape (G,)
        ``loss`` per group.
    dead_inputs : ndarray of int64, shape (G,)
        Number of inputs with ``H_ii = 0`` per group (their weights are 0).
    """

    loss: float
    group_losses: np.ndarray = field(repr=False)
    dead_inputs: np.ndarray = field(repr=False)

    def to_dict(self) -> Dict[str, Any]:
        return {"loss": self.loss, "group_losses": self.group_losses.tolist(),
                "dead_inputs": self.dead_inputs.tolist()}


def gptq(w: Any, hessian: Any, scale: Any, zero_point: Any = 0, *, bits: int = 4,
         signed: bool = True, narrow_range: bool = False, block_size: int = 128,
         damp: float = 0.01, act_order: bool = False) -> Tuple[np.ndarray, GPTQResult]:
    """Quantize weights with GPTQ given the layer Hessian.

    Parameters
    ----------
    w : ndarray of float32, shape (M, K) or (G, M, K)
        Weights: M output rows of K inputs (per group). Not modified.
    hessian : ndarray of float, shape (K, K) or (G, K, K)
        Symmetric positive semi-definite ``H = 2 X^T X / n`` per group (e.g.
        ``HessianAccumulator.hessian_``); computed in float32.
    scale : float or array_like
        Per-row scales: a scalar, ``(M,)``, ``(G, M)`` or ``G * M`` values.
    zero_point : int or array_like of int, default 0
        Per-row zero points, shaped like ``scale``; within the grid.
    bits : int, default 4
        2..16.
    signed, narrow_range : bool
        The integer grid, as in :func:`lpcv.quantize.int_range`.
    block_size : int, default 128
        Columns per lazy-update block (the paper's B = 128). Results depend
        on it only through float rounding.
    damp : float, default 0.01
        Relative dampening, ``H += damp * mean(diag H) * I`` (paper: 1 %).
    act_order : bool, default False
        Quantize columns by descending ``diag(H)``.

    Returns
    -------
    q : ndarray, shape of ``w``
        Integers: int8 (signed) / uint8 for bits <= 8, int16 / uint16 above.
        Dequantize with ``(q - zero_point) * scale`` per row.
    result : GPTQResult
        The proxy loss and dead inputs.

    Raises
    ------
    ValidationError
        Non-float32 ``w``, NaN/Inf, bad settings, invalid scale/zero_point, or
        a Hessian that is not positive definite after dampening.
    ShapeError
        Shapes that do not match.

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize.gptq import gptq, reconstruction_error
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((512, 32)) @ rng.standard_normal((32, 32))
    >>> h = 2 * x.T @ x / len(x)
    >>> w = rng.standard_normal((16, 32)).astype(np.float32)
    >>> scale = np.abs(w).max(axis=1) / 7
    >>> q, info = gptq(w, h, scale, bits=4)
    >>> q.dtype, q.shape, int(q.min()) >= -8 and int(q.max()) <= 7
    (dtype('int8'), (16, 32), True)
    >>> nearest = np.clip(np.rint(w / scale[:, None]), -8, 7)
    >>> err = lambda qq: reconstruction_error(w, qq * scale[:, None], h)
    >>> bool(err(q) < err(nearest))
    True
    """
    W, squeeze = weights3(w)
    G, M, K = W.shape
    H = float_array3(hessian, "hessian", G, squeeze, (K, K))
    s, z, scheme = grid(scale, zero_point, G, M, bits, signed, narrow_range)
    bs = check_int(block_size, "block_size", 1)
    dmp = check_float(damp, "damp", 0.0, 1e6)
    ao = check_bool(act_order, "act_order")
    q, losses, dead = _core.gptq(W, H, s, z, scheme, bs, dmp, ao)
    losses = np.asarray(losses, np.float64)
    res = GPTQResult(float(losses.sum()), losses, np.asarray(dead, np.int64))
    return (q[0] if squeeze else q), res
