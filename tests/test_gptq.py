"""lpcv.quantize.gptq vs a straightforward NumPy implementation of GPTQ, and
its reconstruction error vs round-to-nearest."""
from __future__ import annotations

import numpy as np
import pytest

from lpcv.exceptions import ShapeError, ValidationError
from lpcv.layerdata import HessianAccumulator
from lpcv.quantize.gptq import gptq, reconstruction_error


def ref_gptq(w, h, scale, zp, qmin, qmax, block_size=128, damp=0.01, act_order=False):
    """GPTQ as in the paper's Algorithm 1 (float64, one group): returns
    (integers, proxy loss)."""
    W = w.astype(np.float64).copy()
    H = h.astype(np.float64).copy()
    K = W.shape[1]
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    perm = np.arange(K)
    if act_order:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]
    H[np.arange(K), np.arange(K)] += damp * np.mean(np.diag(H))
    Hinv = np.linalg.inv(H)
    U = np.linalg.cholesky(Hinv).T  # upper, U^T U = H^-1
    s = scale.astype(np.float64)[:, None]
    z = zp.astype(np.float64)[:, None]
    Q = np.zeros_like(W)
    loss = 0.0
    for i1 in range(0, K, block_size):
        i2 = min(i1 + block_size, K)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = W1[:, i:i + 1]
            q = np.clip(np.rint(col / s) + z, qmin, qmax)
            Q[:, i1 + i] = q[:, 0]
            err = (col - (q - z) * s) / U1[i, i]
            loss += float(np.sum(err ** 2) / 2)
            W1[:, i:] -= err @ U1[i:i + 1, i:]
            E1[:, i] = err[:, 0]
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    out = np.empty_like(Q)
    out[:, perm] = Q
    return out.astype(np.int64), loss


def correlated(rng, n, k):
    mix = rng.standard_normal((k, k)) / np.sqrt(k) + np.eye(k)
    return (rng.standard_normal((n, k)) @ mix).astype(np.float32)


def problem(rng, m=48, k=200, n=1000):
    x = correlated(rng, n, k)
    h = HessianAccumulator("dense").update(x).hessian_[0]
    w = rng.standard_normal((m, k)).astype(np.float32)
    scale = (np.abs(w).max(axis=1) / 7).astype(np.float32)
    return w, h, scale, x


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("block_size", [128, 32, 7])
def test_matches_numpy_reference(act_order, block_size):
    rng = np.random.default_rng(0)
    w, h, scale, _ = problem(rng)
    q, info = gptq(w, h, scale, bits=4, block_size=block_size, act_order=act_order)
    qr, loss_r = ref_gptq(w, h, scale, np.zeros(len(w)), -8, 7, block_size, 0.01, act_order)
    assert q.dtype == np.int8 and q.shape == w.shape
    assert np.mean(q == qr) >= 0.999
    assert info.loss == pytest.approx(loss_r, rel=1e-3)
    assert info.dead_inputs.tolist() == [0]


def test_asymmetric_unsigned_grid_and_zero_points():
    rng = np.random.default_rng(1)
    w, h, _, _ = problem(rng, m=20, k=64)
    lo, hi = np.minimum(w.min(1), 0), np.maximum(w.max(1), 0)
    scale = ((hi - lo) / 15).astype(np.float32)
    zp = np.clip(np.rint(-lo / scale), 0, 15).astype(np.int32)
    q, info = gptq(w, h, scale, zp, bits=4, signed=False)
    qr, loss_r = ref_gptq(w, h, scale, zp, 0, 15)
    assert q.dtype == np.uint8 and q.max() <= 15
    assert np.mean(q == qr) >= 0.999
    assert info.loss == pytest.approx(loss_r, rel=1e-3)
    q16, _ = gptq(w, h, scale / 64, zp * 64, bits=10, signed=False)
    assert q16.dtype == np.uint16 and q16.max() <= 1023


def test_beats_round_to_nearest_on_correlated_inputs():
    rng = np.random.default_rng(2)
    w, h, _, x = problem(rng, m=64, k=256, n=2000)
    for bits in (3, 4):
        qmax = 2 ** (bits - 1) - 1
        s = (np.abs(w).max(axis=1) / qmax).astype(np.float32)
        q, _ = gptq(w, h, s, bits=bits)
        near = np.clip(np.rint(w / s[:, None]), -qmax - 1, qmax)
        e_gptq = reconstruction_error(w, q * s[:, None], h)
        e_near = reconstruction_error(w, near * s[:, None], h)
        assert e_gptq < 0.7 * e_near, (bits, e_gptq, e_near)
        # the error is the output error: tr(dW H dW^T) = 2/n ||X dW^T||^2
        dw = (w - q * s[:, None]).astype(np.float64)
        direct = 2 / len(x) * np.sum((x.astype(np.float64) @ dw.T) ** 2)
        assert e_gptq == pytest.approx(direct, rel=1e-4)
    qa, _ = gptq(w, h, s, bits=bits, act_order=True)
    assert reconstruction_error(w, qa * s[:, None], h) < e_near


def test_dead_inputs_and_damp():
    rng = np.random.default_rng(3)
    w, _, scale, x = problem(rng, m=16, k=40)
    x[:, [3, 17]] = 0.0
    h = HessianAccumulator("dense").update(x).hessian_[0]
    q, info = gptq(w, h, scale, bits=4)
    assert info.dead_inputs.tolist() == [2]
    assert np.all(q[:, [3, 17]] == 0)  # dead weights become zero
    qr, _ = ref_gptq(w, h, scale, np.zeros(16), -8, 7)
    assert np.mean(q == qr) >= 0.999
    # all-zero Hessian: every input dead, all weights zero
    qz, iz = gptq(w, np.zeros((40, 40), np.float32), scale, bits=4)
    assert np.all(qz == 0) and iz.dead_inputs.tolist() == [40]
    # an indefinite matrix (positive diagonal) is reported with a hint
    indef = np.eye(40) - 0.5 * (np.ones((40, 40)) - np.eye(40))
    with pytest.raises(ValidationError, match="positive definite.*increase damp"):
        gptq(w, indef, scale)
    # a rank-deficient Hessian (10 rows, 40 inputs) with a small ridge
    xs = x[:10]
    hs = 2 / 10 * xs.T.astype(np.float64) @ xs
    hs[np.arange(40), np.arange(40)] += 1e-3  # no dead inputs
    q1, _ = gptq(w, hs, scale, damp=0.0)
    q2, _ = gptq(w, hs, scale, damp=1e4)  # huge damp: H ~ diagonal -> close to nearest
    near = np.clip(np.rint(w / scale[:, None]), -8, 7)
    assert np.mean(q2 == near) > np.mean(q1 == near)
    assert np.mean(q2 == near) > 0.95


def test_grouped_depthwise_matches_per_group_calls():
    rng = np.random.default_rng(4)
    G, M, K = 16, 2, 9
    x = rng.standard_normal((2, G, 12, 12)).astype(np.float32)
    acc = HessianAccumulator("conv", kernel_shape=3, pads=1, group=G).update(x)
    H = acc.hessian_
    w = rng.standard_normal((G, M, K)).astype(np.float32)
    s = (np.abs(w).max(axis=2) / 7).astype(np.float32)
    q, info = gptq(w, H, s, bits=4)
    assert q.shape == (G, M, K) and info.group_losses.shape == (G,)
    for g in range(G):
        qg, ig = gptq(w[g], H[g], s[g], bits=4)
        np.testing.assert_array_equal(q[g], qg)
        assert ig.loss == pytest.approx(info.group_losses[g], rel=1e-6)


def test_inputs_not_modified_and_deterministic():
    rng = np.random.default_rng(5)
    w, h, scale, _ = problem(rng, m=8, k=30)
    h32 = h.astype(np.float32)
    w0, h0 = w.copy(), h32.copy()
    a, _ = gptq(w, h32, scale, act_order=True)
    b, _ = gptq(w, h32, scale, act_order=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_array_equal(h32, h0)


def test_bad_input():
    rng = np.random.default_rng(6)
    w, h, scale, _ = problem(rng, m=4, k=8)
    with pytest.raises(ValidationError, match="float32"):
        gptq(w.astype(np.float64), h, scale)
    with pytest.raises(ShapeError, match="hessian"):
        gptq(w, h[:4, :4], scale)
    with pytest.raises(ShapeError, match="hessian"):
        gptq(w, h[None], scale)
    with pytest.raises(ShapeError, match="scale"):
        gptq(w, h, scale[:3])
    with pytest.raises(ValidationError, match="scale"):
        gptq(w, h, -scale)
    with pytest.raises(ValidationError, match="zero_point"):
        gptq(w, h, scale, 9, bits=4)
    with pytest.raises(ValidationError, match="bits"):
        gptq(w, h, scale, bits=1)
    with pytest.raises(ValidationError, match="block_size"):
        gptq(w, h, scale, block_size=0)
    with pytest.raises(ValidationError, match="damp"):
        gptq(w, h, scale, damp=-1.0)
    bad = w.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValidationError, match="NaN"):
        gptq(bad, h, scale)
    hb = h.copy()
    hb[1, 2] += 1.0
    with pytest.raises(ValidationError, match="symmetric"):
        gptq(w, hb, scale)
    hn = h.copy()
    hn[2, 2] = -1.0
    with pytest.raises(ValidationError, match="negative"):
        gptq(w, hn, scale)
    with pytest.raises(TypeError):
        gptq(w, h, scale, 0.5)


def test_doctests():
    import doctest

    import importlib

    # the package exports the function gptq under the submodule's name
    mod = importlib.import_module("lpcv.quantize.gptq")
    helpers = importlib.import_module("lpcv.quantize._layerwise")
    for m in (mod, helpers):
        res = doctest.testmod(m, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert res.attempted > 0 and res.failed == 0
