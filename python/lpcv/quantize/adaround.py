"""AdaRound: learned rounding of a layer's weights (Nagel et al., "Up or Down?
Adaptive Rounding for Post-Training Quantization", ICML 2020).

Each weight is rounded down or up; which, is learned by minimising the
layer's output reconstruction error on calibration rows instead of rounding
each weight to its nearest grid point. For weights ``W`` (per group ``(M, K)``)
with per-row scale ``s``, zero point ``z`` and grid ``[qmin, qmax]``::

    h(V)  = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)   zeta = 1.1, gamma = -0.1
    W~    = s * (clip(floor(W / s) + h(V) + z, qmin, qmax) - z)
    loss  = mean over rows of ||f(x W^T + b) - f(x^ W~^T + b)||^2
            + reg_weight * sum(1 - |2 h(V) - 1|^beta)

``x`` is the layer's float input, ``x^`` (``x_quantized``) the input the
quantized model feeds it (all preceding layers quantized), ``f`` the
activation that follows the layer (ReLU / ReLU6 / none). ``V`` starts where
``h(V)`` equals the fractional part of ``W / s`` and is optimised with Adam
on random minibatches of rows; the regulariser is off for the first
``warm_start`` fraction of the iterations, then ``beta`` decays linearly from
``beta[0]`` to ``beta[1]`` so that ``h`` is pushed to 0 or 1. The result is
``clip(floor(W / s) + [h(V) >= 0.5] + z, qmin, qmax)``: every weight ends on
the floor or the ceiling of ``W / s`` (within the grid).

Defaults are the paper's and its reference implementations': 10,000
iterations, Adam with learning rate 1e-3, ``reg_weight`` 0.01, ``beta``
annealed from 20 to 2 after a 20 % warm start. The reconstruction term is
summed over output channels and averaged over rows (the scale the
regulariser weight was chosen for). Minibatches are ``batch_size`` rows
(patch positions of a convolution, see :mod:`lpcv.layerdata`) drawn
uniformly with replacement; all rows are used when there are at most
``batch_size``.

The optimisation runs in the C++ core (float32, oneDNN GEMMs, groups in
parallel for depthwise layers) without the GIL.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from ..exceptions import ShapeError, ValidationError
from ._common import check_bool, check_choice, check_float, check_int
from ._layerwise import float_array3, grid, weights3

__all__ = ["adaround", "AdaRoundResult"]

ACTIVATIONS = (None, "relu", "relu6")


@dataclass(frozen=True)
class AdaRoundResult:
    """What :func:`adaround` reports besides the integers.

    Attributes
    ----------
    loss : float
        Output reconstruction error of the AdaRound weights on all given rows:
        ``mean over rows of ||f(x W^T + b) - f(x^ Wq^T + b)||^2``, summed over
        groups.
    nearest_loss : float
        The same for round-to-nearest (half to even) weights.
    changed : float
        Fraction of weights rounded differently from round-to-nearest.
    iters : int
        Iterations run.
    final_objective : float
        The relaxed objective (reconstruction + regulariser) of the last
        minibatch, summed over groups (NaN when ``iters == 0``).
    """

    loss: float
    nearest_loss: float
    changed: float
    iters: int
    final_objective: float

    def to_dict(self) -> Dict[str, Any]:
        return dict(loss=self.loss, nearest_loss=self.nearest_loss, changed=self.changed,
                    iters=self.iters, final_objective=self.final_objective)


def _seed(random_state) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2 ** 63))
    if isinstance(random_state, (numbers.Integral, np.integer)) and not isinstance(
            random_state, bool):
        return int(random_state) % (2 ** 64)
    raise TypeError(f"random_state must be None, an int or a numpy Generator, got "
                    f"{random_state!r}")


def _per_row(v: Any, name: str, n: int) -> np.ndarray:
    a = np.asarray(v)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real array, got dtype {a.dtype}")
    if a.size != n:
        raise ShapeError(f"{name} must have {n} values (one per output row), got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    if not np.isfinite(a).all():
        raise ValidationError(f"{name} contains NaN or Inf values")
    return a


def _solver(w, x, scale, zero_point, bits, signed, narrow_range, bias, activation, x_quantized,
            iters, batch_size, lr, reg_weight, beta, warm_start, random_state):
    W, squeeze = weights3(w)
    G, M, K = W.shape
    X = float_array3(x, "x", G, squeeze, (None, K))
    if X.shape[1] == 0:
        raise ShapeError("x has no rows")
    Xq = None
    if x_quantized is not None:
        Xq = float_array3(x_quantized, "x_quantized", G, squeeze, (X.shape[1], K))
    s, z, scheme = grid(scale, zero_point, G, M, bits, signed, narrow_range)
    b = None if bias is None else _per_row(bias, "bias", G * M)
    act = check_choice(activation, "activation", ACTIVATIONS[1:]) if activation is not None \
        else "none"
    it = check_int(iters, "iters", 0)
    bs = check_int(batch_size, "batch_size", 1)
    lr_ = check_float(lr, "lr", 0.0, 1e6, lo_open=True)
    rw = check_float(reg_weight, "reg_weight", 0.0, 1e12)
    try:
        b0, b1 = beta
    except (TypeError, ValueError):
        raise ValidationError(f"beta must be a pair (start, end), got {beta!r}") from None
    b0 = check_float(b0, "beta[0]", 1.0, 1e4)
    b1 = check_float(b1, "beta[1]", 1.0, 1e4)
    ws = check_float(warm_start, "warm_start", 0.0, 1.0)
    solver = _core.AdaRoundSolver(W, X, Xq, s, z, b, scheme, it, bs, lr_, rw, b0, b1, ws, act,
                                  _seed(random_state))
    return solver, scheme, squeeze, it


def adaround(w: Any, x: Any, scale: Any, zero_point: Any = 0, *, bits: int = 4,
             signed: bool = True, narrow_range: bool = False, bias: Any = None,
             activation: Optional[str] = None, x_quantized: Any = None, iters: int = 10000,
             batch_size: int = 1024, lr: float = 1e-3, reg_weight: float = 0.01,
             beta: Sequence[float] = (20.0, 2.0), warm_start: float = 0.2,
             random_state: Any = None,
             progress: bool = False) -> Tuple[np.ndarray, AdaRoundResult]:
    """Quantize weights with AdaRound given calibration inputs of the layer.

    Parameters
    ----------
    w : ndarray of float32, shape (M, K) or (G, M, K)
        Weights (per group: M output rows of K inputs). Not modified.
    x : ndarray of float, shape (N, K) or (G, N, K)
        Layer inputs (rows), e.g. from
        :meth:`lpcv.layerdata.HessianAccumulator.sample_rows`; computed in float32.
    scale : float or array_like
        Per-row scales: a scalar, ``(M,)``, ``(G, M)`` or ``G * M`` values.
    zero_point : int or array_like of int, default 0
        Per-row zero points, shaped like ``scale``; within the grid.
    bits : int, default 4
    signed, narrow_range : bool
        The integer grid, as in :func:`lpcv.quantize.int_range`.
    bias : array_like, optional
        Per-row bias (``G * M`` values) added before the activation.
    activation : {None, "relu", "relu6"}
        The activation that follows the layer (fused in the reconstruction loss).
    x_quantized : ndarray, optional
        The same rows as seen by the quantized model (shape of ``x``);
        default ``x``.
    iters : int, default 10000
    batch_size : int, default 1024
        Rows per Adam step.
    lr : float, default 1e-3
        Adam learning rate.
    reg_weight : float, default 0.01
        Weight of the rounding regulariser.
    beta : (float, float), default (20, 2)
        Regulariser exponent annealed linearly from ``beta[0]`` to ``beta[1]``.
    warm_start : float, default 0.2
        Fraction of the iterations without the regulariser.
    random_state : None, int or numpy Generator
        Minibatch sampling; an int makes the result reproducible.
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    q : ndarray, shape of ``w``
        Integers: int8 (signed) / uint8 for bits <= 8, int16 / uint16 above.
    result : AdaRoundResult
        Reconstruction error of the result vs round-to-nearest.

    Examples
    --------
    >>> import numpy as np
    >>> from lpcv.quantize.adaround import adaround
    >>> rng = np.random.default_rng(0)
    >>> x = (rng.standard_normal((512, 16)) @ rng.standard_normal((16, 16))).astype(np.float32)
    >>> w = rng.standard_normal((8, 16)).astype(np.float32)
    >>> scale = np.abs(w).max(axis=1) / 7
    >>> q, info = adaround(w, x, scale, bits=4, iters=500, batch_size=256, random_state=0)
    >>> q.dtype, q.shape
    (dtype('int8'), (8, 16))
    >>> bool(info.loss < info.nearest_loss)
    True
    >>> f = np.floor(w / scale[:, None])
    >>> bool(np.all((q == f) | (q == f + 1)))
    True
    """
    solver, scheme, squeeze, it = _solver(w, x, scale, zero_point, bits, signed, narrow_range,
                                          bias, activation, x_quantized, iters, batch_size, lr,
                                          reg_weight, beta, warm_start, random_state)
    if check_bool(progress, "progress") and it > 0:
        from tqdm.auto import tqdm
        chunk = max(1, min(500, it // 50 or 1))
        with tqdm(total=it, desc="AdaRound", unit="it") as bar:
            while solver.iteration < it:
                before = solver.iteration
                solver.run(chunk)
                bar.update(solver.iteration - before)
    else:
        solver.run(it)
    q = solver.integers(False, scheme)
    qn = solver.integers(True, scheme)
    loss = float(np.sum(solver.output_error(np.ascontiguousarray(q, dtype=np.int32))))
    nloss = float(np.sum(solver.output_error(np.ascontiguousarray(qn, dtype=np.int32))))
    res = AdaRoundResult(loss=loss, nearest_loss=nloss, changed=float(np.mean(q != qn)),
                         iters=int(solver.iteration),
                         final_objective=float(np.sum(solver.last_loss)))
    return (q[0] if squeeze else q), res
