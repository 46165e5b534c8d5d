"""lpcv.layerdata: im2col (vs onnxruntime Conv and a NumPy direct convolution)
and the streaming Hessian (vs float64 NumPy X^T X)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from lpcv import _core
from lpcv.exceptions import NotFittedError, ShapeError, ValidationError
from lpcv.layerdata import HessianAccumulator, conv_output_shape, im2col, row_indices


def direct_conv(x, w, strides, pads, dilations, group):
    """Plain NumPy NCHW convolution (ONNX semantics), float64."""
    n, c, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    pt, pl, pb, pr = pads
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    oh = (h + pt + pb - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + pl + pr - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n, cout, oh, ow))
    mpg = cout // group
    for o in range(cout):
        g = o // mpg
        for i in range(kh):
            for j in range(kw):
                hs = i * dilations[0]
                ws = j * dilations[1]
                patch = xp[:, g * cg:(g + 1) * cg,
                           hs:hs + strides[0] * (oh - 1) + 1:strides[0],
                           ws:ws + strides[1] * (ow - 1) + 1:strides[1]]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
    return out


def conv_via_im2col(x, w, strides, pads, dilations, group):
    cout = w.shape[0]
    cols = im2col(x, w.shape[2:], strides, pads, dilations, group)
    wg = w.reshape(group, cout // group, -1).astype(np.float64)
    y = np.einsum("gmk,grk->gmr", wg, cols.astype(np.float64))  # (G, M, N*OH*OW)
    n = x.shape[0]
    _, oh_ow_n, _ = cols.shape
    y = y.reshape(cout, n, -1).transpose(1, 0, 2)
    return y, oh_ow_n // n


CASES = [
    # x shape, w shape, strides, pads, dilations, group
    ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((1, 4, 9, 8), (6, 2, 3, 2), (2, 1), (0, 1, 2, 0), (1, 2), 2),
    ((2, 8, 6, 6), (8, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 8),  # depthwise
    ((1, 2, 5, 5), (3, 2, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # pointwise
    ((1, 3, 10, 9), (2, 3, 3, 3), (3, 2), (2, 0, 1, 2), (2, 1), 1),
]


@pytest.mark.parametrize("xs,ws,st,pd,dl,g", CASES)
def test_im2col_matches_direct_convolution(xs, ws, st, pd, dl, g):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    ref = direct_conv(x.astype(np.float64), w.astype(np.float64), st, pd, dl, g)
    y, ohw = conv_via_im2col(x, w, st, pd, dl, g)
    assert ohw == ref.shape[2] * ref.shape[3]
    np.testing.assert_allclose(y.reshape(ref.shape), ref, rtol=1e-5, atol=1e-4)
    assert conv_output_shape(xs, ws[2:], st, pd, dl, g) == im2col(x, ws[2:], st, pd, dl, g).shape


def _ort_conv(x, w, strides, pads, dilations, group):
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=list(strides), pads=list(pads),
                            dilations=list(dilations), group=group,
                            kernel_shape=list(w.shape[2:]))
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_im2col_matches_onnxruntime_grouped_conv():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 11, 10)).astype(np.float32)
    w = rng.standard_normal((9, 2, 3, 3)).astype(np.float32)
    st, pd, dl, g = (2, 1), (1, 0, 2, 1), (1, 2), 3
    ref = _ort_conv(x, w, st, pd, dl, g)
    y, _ = conv_via_im2col(x, w, st, pd, dl, g)
    np.testing.assert_allclose(y.reshape(ref.shape), ref, rtol=1e-4, atol=1e-4)


def test_im2col_1d_and_rows_subset():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 12)).astype(np.float32)
    cols = im2col(x, 3, strides=2, pads=(1, 2), dilations=1, group=2)
    full = im2col(x[:, :, None, :], (1, 3), strides=(1, 2), pads=(0, 1, 0, 2), group=2)
    np.testing.assert_array_equal(cols, full)
    idx = np.array([5, 0, 3, 3])
    np.testing.assert_array_equal(im2col(x, 3, 2, (1, 2), 1, 2, rows=idx), cols[:, idx])


def test_im2col_bad_input():
    x = np.zeros((1, 4, 5, 5), np.float32)
    with pytest.raises(ValidationError, match="group"):
        im2col(x, 3, group=3)
    with pytest.raises(ValidationError, match="strides"):
        im2col(x, 3, strides=0)
    with pytest.raises(ValidationError, match="pads"):
        im2col(x, 3, pads=(1, 1, 1))
    with pytest.raises(ShapeError):
        im2col(x, 7)  # kernel larger than the input
    with pytest.raises(ShapeError):
        im2col(np.zeros((4, 5), np.float32), 3)
    with pytest.raises(TypeError):
        im2col(x.astype(np.int32), 3)
    with pytest.raises(ValidationError, match="row index"):
        im2col(x, 3, rows=np.array([9]))


def test_dense_hessian_streaming_matches_numpy():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((9000, 24)) @ rng.standard_normal((24, 24))).astype(np.float32)
    x[:, 5] = 0.0  # a dead input
    acc = HessianAccumulator("dense")
    for part in np.array_split(x, [1000, 1001, 5000]):
        acc.update(part)
    ref = 2.0 / len(x) * x.astype(np.float64).T @ x.astype(np.float64)
    assert acc.n_rows_ == 9000 and acc.n_samples_ == 9000
    np.testing.assert_allclose(acc.hessian_[0], ref, rtol=2e-6, atol=1e-6 * np.abs(ref).max())
    assert acc.hessian_.dtype == np.float64 and acc.hessian_[0, 5].max() == 0.0
    # (N, C, H, W) inputs flatten to (N, C*H*W)
    acc4 = HessianAccumulator("dense").update(x[:60].reshape(60, 2, 3, 4))
    np.testing.assert_allclose(acc4.hessian_[0], 2 / 60 * x[:60].T.astype(np.float64) @ x[:60],
                               rtol=1e-5, atol=1e-5)


def test_conv_hessian_matches_im2col_gram():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 8, 40, 40)).astype(np.float32)  # 3*38*38 = 4332 rows > chunk
    for g in (1, 8):
        acc = HessianAccumulator("conv", kernel_shape=3, strides=1, pads=0, group=g)
        acc.update(x[:2]).update(x[2:])
        cols = im2col(x, 3, group=g).astype(np.float64)
        ref = 2.0 / cols.shape[1] * np.einsum("gnk,gnl->gkl", cols, cols)
        assert acc.hessian_.shape == (g, 72 // g, 72 // g)
        assert acc.n_rows_ == cols.shape[1] and acc.n_samples_ == 3
        np.testing.assert_allclose(acc.hessian_, ref, rtol=1e-5, atol=1e-5)


def test_grouped_gram_parallel_over_groups():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((16, 300, 9)).astype(np.float32)
    S = np.zeros((16, 9, 9))
    _core.accumulate_gram(X, S)
    np.testing.assert_allclose(S, np.einsum("gnk,gnl->gkl", X.astype(np.float64), X), rtol=1e-5,
                               atol=1e-4)


def test_sample_rows_bounded_matched_and_deterministic():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 4, 10, 10)).astype(np.float32)
    xq = x + 0.01
    acc = HessianAccumulator("conv", kernel_shape=(3, 3), pads=1, group=2)
    n = acc.n_rows(x)
    assert n == 400
    a = acc.sample_rows(x, 50, random_state=7)
    b = acc.sample_rows(x, 50, random_state=7)
    assert a.shape == (2, 50, 18)
    np.testing.assert_array_equal(a, b)
    idx = row_indices(n, 50, random_state=7)
    assert len(np.unique(idx)) == 50 and idx.max() < n
    np.testing.assert_array_equal(acc.rows(x, idx), a)
    np.testing.assert_array_equal(acc.rows(xq, idx), im2col(xq, 3, 1, 1, 1, 2)[:, idx])
    assert acc.sample_rows(x, 10 ** 6).shape == (2, 400, 18)
    d = HessianAccumulator("dense")
    xd = rng.standard_normal((30, 5)).astype(np.float32)
    np.testing.assert_array_equal(d.sample_rows(xd, 7, 1)[0], xd[row_indices(30, 7, 1)])


def test_hessian_bad_input():
    with pytest.raises(NotFittedError):
        _ = HessianAccumulator().hessian_
    with pytest.raises(ValidationError, match="kind"):
        HessianAccumulator("lstm").update(np.zeros((2, 2), np.float32))
    with pytest.raises(ValidationError, match="kernel_shape"):
        HessianAccumulator("conv").update(np.zeros((1, 1, 3, 3), np.float32))
    acc = HessianAccumulator("dense").update(np.ones((2, 3), np.float32))
    with pytest.raises(ShapeError):
        acc.update(np.ones((2, 4), np.float32))
    bad = np.ones((2, 3), np.float32)
    bad[1, 1] = np.nan
    before = acc.hessian_.copy()
    with pytest.raises(ValidationError, match="NaN"):
        acc.update(bad)
    np.testing.assert_array_equal(acc.hessian_, before)
    with pytest.raises(ValidationError, match="NaN"):
        HessianAccumulator("conv", kernel_shape=1).update(bad.reshape(1, 1, 2, 3))
    with pytest.raises(ValidationError, match="empty"):
        acc.update(np.zeros((0, 3), np.float32))
    with pytest.raises(TypeError):
        acc.update(np.ones((2, 3), np.int64))
    assert acc.reset() is acc and not hasattr(acc, "n_rows_")


def test_inverse_cholesky_upper_and_sgemm():
    rng = np.random.default_rng(8)
    for n in (3, 129, 300):
        a = rng.standard_normal((n, 2 * n))
        h = (a @ a.T / n + 0.1 * np.eye(n)).astype(np.float32)
        u = _core.inverse_cholesky_upper(h)
        assert np.all(np.tril(u, -1) == 0) and np.all(np.diag(u) > 0)
        hinv = np.linalg.inv(h.astype(np.float64))
        assert np.abs(u.T.astype(np.float64) @ u - hinv).max() < 1e-5 * np.abs(hinv).max()
    with pytest.raises(ValidationError, match="positive definite"):
        _core.inverse_cholesky_upper(-np.eye(4, dtype=np.float32))
    a = rng.standard_normal((7, 5)).astype(np.float32)
    b = rng.standard_normal((7, 3)).astype(np.float32)
    np.testing.assert_allclose(_core.sgemm(a, b, True, False), a.T @ b, rtol=1e-5, atol=1e-5)


def test_doctests():
    import doctest

    import lpcv.layerdata as mod
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0


def test_wide_inputs_triangular_product():
    # >= 1024 inputs take the triangular path (blocks of 512 columns, mirrored)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4500, 1100)).astype(np.float32)  # two row chunks
    acc = HessianAccumulator("dense").update(x[:100]).update(x[100:])
    ref = 2.0 / len(x) * x.T.astype(np.float64) @ x.astype(np.float64)
    h = acc.hessian_[0]
    np.testing.assert_array_equal(h, h.T)
    np.testing.assert_allclose(h, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
