"""lpcv.quantize.adaround: better than round-to-nearest on synthetic layers,
floor/ceil only, reproducible, grouped, gradient vs finite differences, and
the reported errors vs NumPy."""
from __future__ import annotations

import numpy as np
import pytest

from lpcv import _core
from lpcv.exceptions import ShapeError, ValidationError
from lpcv.quantize.adaround import adaround

ZETA, GAMMA = 1.1, -0.1


def layer(rng, n=2048, k=48, m=24):
    mix = rng.standard_normal((k, k)) / np.sqrt(k) + 0.5 * np.eye(k)
    x = (rng.standard_normal((n, k)) @ mix).astype(np.float32)
    w = (0.1 * rng.standard_normal((m, k))).astype(np.float32)
    return x, w


def out_err(w, wq, x, xq=None, bias=None, act=None):
    """NumPy oracle: mean over rows of ||f(x w^T + b) - f(xq wq^T + b)||^2."""
    xq = x if xq is None else xq
    b = 0 if bias is None else bias
    f = {None: lambda v: v, "relu": lambda v: np.maximum(v, 0),
         "relu6": lambda v: np.clip(v, 0, 6)}[act]
    y = f(x.astype(np.float64) @ w.T.astype(np.float64) + b)
    yq = f(xq.astype(np.float64) @ wq.T.astype(np.float64) + b)
    return float(np.sum((y - yq) ** 2) / len(x))


@pytest.mark.parametrize("bits", [3, 4])
def test_beats_round_to_nearest_and_rounds_to_floor_or_ceil(bits):
    rng = np.random.default_rng(0)
    x, w = layer(rng)
    qmax = 2 ** (bits - 1) - 1
    scale = (np.abs(w).max(axis=1) / qmax).astype(np.float32)
    q, info = adaround(w, x, scale, bits=bits, iters=1500, batch_size=512, random_state=0)
    s = scale[:, None]
    near = np.clip(np.rint(w / s), -qmax - 1, qmax)
    e_ada = out_err(w, q * s, x)
    e_near = out_err(w, near * s, x)
    assert e_ada < 0.75 * e_near, (e_ada, e_near)
    assert info.loss == pytest.approx(e_ada, rel=1e-4)
    assert info.nearest_loss == pytest.approx(e_near, rel=1e-4)
    assert info.changed == pytest.approx(np.mean(q != near))
    assert info.iters == 1500
    fl = np.floor(w / s)
    lo = np.clip(fl, -qmax - 1, qmax)
    hi = np.clip(fl + 1, -qmax - 1, qmax)
    assert np.all((q == lo) | (q == hi))
    assert q.dtype == np.int8 and q.shape == w.shape


def test_activation_bias_and_quantized_inputs():
    rng = np.random.default_rng(1)
    x, w = layer(rng, n=1024, k=32, m=16)
    xq = x + 0.05 * rng.standard_normal(x.shape).astype(np.float32)
    bias = (0.2 * rng.standard_normal(16)).astype(np.float32)
    lo, hi = np.minimum(w.min(1), 0), np.maximum(w.max(1), 0)
    scale = ((hi - lo) / 15).astype(np.float32)
    zp = np.clip(np.rint(-lo / scale), 0, 15).astype(np.int32)
    for act in ("relu", "relu6"):
        q, info = adaround(w, x, scale, zp, bits=4, signed=False, bias=bias, activation=act,
                           x_quantized=xq, iters=600, batch_size=256, random_state=3)
        assert q.dtype == np.uint8 and q.max() <= 15
        s, z = scale[:, None], zp[:, None]
        e_ada = out_err(w, (q.astype(np.float64) - z) * s, x, xq, bias, act)
        near = np.clip(np.rint(w / s) + z, 0, 15)
        e_near = out_err(w, (near - z) * s, x, xq, bias, act)
        assert info.loss == pytest.approx(e_ada, rel=1e-4)
        assert info.nearest_loss == pytest.approx(e_near, rel=1e-4)
        assert e_ada < e_near


def test_deterministic_and_chunking_invariant():
    rng = np.random.default_rng(2)
    x, w = layer(rng, n=800, k=20, m=8)
    scale = (np.abs(w).max(axis=1) / 7).astype(np.float32)
    kw = dict(bits=4, iters=300, batch_size=64)
    a, ia = adaround(w, x, scale, random_state=5, **kw)
    b, ib = adaround(w, x, scale, random_state=5, progress=True, **kw)  # chunked runs
    np.testing.assert_array_equal(a, b)
    assert ia == ib
    scheme = _core.QuantScheme(4, True, False, False, False)
    z = np.zeros(8, np.int32)
    w3, x3 = w[None], x[None]
    args = (w3, x3, None, scale, z, None, scheme, 300, 64, 1e-3, 0.01, 20.0, 2.0, 0.2, "none", 9)
    s1, s2 = _core.AdaRoundSolver(*args), _core.AdaRoundSolver(*args)
    s1.run(300)
    for n in (1, 99, 150, 1000):
        s2.run(n)
    assert s2.iteration == 300
    np.testing.assert_array_equal(s1.V, s2.V)
    w0, x0 = w.copy(), x.copy()
    adaround(w, x, scale, random_state=1, iters=10)
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_array_equal(x, x0)


def test_grouped_depthwise_matches_per_group_calls():
    rng = np.random.default_rng(3)
    G, M, K, N = 16, 1, 9, 200
    x = rng.standard_normal((G, N, K)).astype(np.float32)
    w = (0.3 * rng.standard_normal((G, M, K))).astype(np.float32)
    scale = (np.abs(w).max(axis=2) / 3).astype(np.float32)
    kw = dict(bits=3, iters=200, batch_size=N, random_state=0)  # full batch: no sampling
    q, info = adaround(w, x, scale, **kw)
    assert q.shape == (G, M, K)
    total, total_near = 0.0, 0.0
    for g in range(G):
        qg, ig = adaround(w[g], x[g], scale[g], **kw)
        np.testing.assert_array_equal(q[g], qg)
        total += ig.loss
        total_near += ig.nearest_loss
    assert info.loss == pytest.approx(total, rel=1e-5)
    assert info.nearest_loss == pytest.approx(total_near, rel=1e-5)
    assert info.loss <= info.nearest_loss


def _numpy_objective(v, w, x, scale, zp, qmin, qmax, bias, act, beta, reg_weight, use_reg):
    """The AdaRound objective in float64 (oracle for the gradient check)."""
    s, z = scale[:, None].astype(np.float64), zp[:, None].astype(np.float64)
    fl = np.floor(w / scale[:, None]).astype(np.float64)
    h = np.clip(1 / (1 + np.exp(-v)) * (ZETA - GAMMA) + GAMMA, 0, 1)
    wt = s * (np.clip(fl + h + z, qmin, qmax) - z)
    f = {"none": lambda a: a, "relu": lambda a: np.maximum(a, 0)}[act]
    y = f(x.astype(np.float64) @ w.T.astype(np.float64) + bias)
    yt = f(x.astype(np.float64) @ wt.T + bias)
    loss = np.sum((y - yt) ** 2) / len(x)
    if use_reg:
        loss += reg_weight * np.sum(1 - np.abs(2 * h - 1) ** beta)
    return loss


@pytest.mark.parametrize("act,use_reg", [("none", False), ("none", True), ("relu", True)])
def test_gradient_matches_finite_differences(act, use_reg):
    rng = np.random.default_rng(4)
    M, K, N = 4, 6, 40
    x = rng.standard_normal((N, K)).astype(np.float32)
    w = rng.standard_normal((M, K)).astype(np.float32)
    scale = (np.abs(w).max(axis=1) / 3).astype(np.float32)  # 4-bit grid, far from the clamp
    zp = np.zeros(M, np.int32)
    bias = (0.1 * rng.standard_normal(M)).astype(np.float32)
    scheme = _core.QuantScheme(4, True, False, False, False)
    solver = _core.AdaRoundSolver(w[None], x[None], None, scale, zp, bias, scheme, 10, N, 1e-3,
                                  0.05, 20.0, 2.0, 0.2, act, 0)
    v = rng.uniform(-1.5, 1.5, (M, K)).astype(np.float32)  # h inside (0, 1)
    rows = np.arange(N, dtype=np.int64)
    beta = 3.0
    loss, grad = solver.loss_and_grad(0, v, rows, beta, use_reg)
    ref = _numpy_objective(v.astype(np.float64), w, x, scale, zp, -8, 7, bias, act, beta,
                           0.05, use_reg)
    assert loss == pytest.approx(ref, rel=1e-4)
    eps = 1e-4
    num = np.zeros_like(grad, dtype=np.float64)
    for i in range(M):
        for j in range(K):
            vp = v.astype(np.float64)
            vm = vp.copy()
            vp[i, j] += eps
            vm[i, j] -= eps
            num[i, j] = (_numpy_objective(vp, w, x, scale, zp, -8, 7, bias, act, beta, 0.05,
                                          use_reg)
                         - _numpy_objective(vm, w, x, scale, zp, -8, 7, bias, act, beta, 0.05,
                                            use_reg)) / (2 * eps)
    np.testing.assert_allclose(grad, num, rtol=2e-3, atol=2e-4 * np.abs(num).max())
    # rows subset: the loss is the mean over the given rows
    l2, _ = solver.loss_and_grad(0, v, rows[:10], beta, False)
    ref2 = _numpy_objective(v.astype(np.float64), w, x[:10], scale, zp, -8, 7, bias, act, beta,
                            0.05, False)
    assert l2 == pytest.approx(ref2, rel=1e-4)


def test_initialisation_is_nearest_rounding():
    rng = np.random.default_rng(5)
    x, w = layer(rng, n=100, k=10, m=5)
    scale = (np.abs(w).max(axis=1) / 7).astype(np.float32)
    q, info = adaround(w, x, scale, iters=0)
    near = np.clip(np.rint(w / scale[:, None]), -8, 7)
    np.testing.assert_array_equal(q, near)  # no exact .5 fractions here
    assert info.changed == 0.0 and info.loss == pytest.approx(info.nearest_loss)
    assert np.isnan(info.final_objective)


def test_bad_input():
    rng = np.random.default_rng(6)
    x, w = layer(rng, n=50, k=8, m=4)
    s = (np.abs(w).max(axis=1) / 7).astype(np.float32)
    with pytest.raises(ValidationError, match="float32"):
        adaround(w.astype(np.float64), x, s)
    with pytest.raises(ShapeError, match="x"):
        adaround(w, x[:, :5], s)
    with pytest.raises(ShapeError, match="x"):
        adaround(w, x[None], s)
    with pytest.raises(ShapeError, match="x_quantized"):
        adaround(w, x, s, x_quantized=x[:10])
    with pytest.raises(ShapeError, match="scale"):
        adaround(w, x, s[:2])
    with pytest.raises(ShapeError, match="bias"):
        adaround(w, x, s, bias=np.zeros(3))
    with pytest.raises(ValidationError, match="activation"):
        adaround(w, x, s, activation="gelu")
    with pytest.raises(ValidationError, match="iters"):
        adaround(w, x, s, iters=-1)
    with pytest.raises(ValidationError, match="batch_size"):
        adaround(w, x, s, batch_size=0)
    with pytest.raises(ValidationError, match="lr"):
        adaround(w, x, s, lr=0.0)
    with pytest.raises(ValidationError, match="beta"):
        adaround(w, x, s, beta=(20, 0.5))
    with pytest.raises(ValidationError, match="beta"):
        adaround(w, x, s, beta=3)
    with pytest.raises(ValidationError, match="warm_start"):
        adaround(w, x, s, warm_start=1.5)
    with pytest.raises(ValidationError, match="zero_point"):
        adaround(w, x, s, 8, bits=4)
    with pytest.raises(ValidationError, match="scale"):
        adaround(w, x, np.zeros(4, np.float32))
    xb = x.copy()
    xb[3, 3] = np.inf
    with pytest.raises(ValidationError, match="NaN or Inf"):
        adaround(w, xb, s)
    with pytest.raises(TypeError):
        adaround(w, x.astype(np.int32), s)
    with pytest.raises(TypeError):
        adaround(w, x, s, random_state="seed")


def test_extreme_ratios_clamp_without_overflow():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    w = np.array([[1e30, -1e30, 0.3, 2.0]], np.float32)
    q, info = adaround(w, x, np.float32(1e-30), bits=4, iters=20, random_state=0)
    np.testing.assert_array_equal(q, [[7, -8, 7, 7]])
    assert np.isfinite(info.loss)


def test_doctests():
    import doctest

    import importlib

    # the package exports the function adaround under the submodule's name
    mod = importlib.import_module("lpcv.quantize.adaround")
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0
