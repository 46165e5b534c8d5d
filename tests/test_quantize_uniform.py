"""lpcv.quantize uniform quantization against independent NumPy references."""
from __future__ import annotations

import numpy as np
import pytest

import lpcv
from lpcv import _core
from lpcv.exceptions import NotFittedError, ValidationError
from lpcv.quantize import (UniformQuantizer, dequantize, fake_quantize, int_range, pack_int4,
                           quantize, unpack_int4)

F32 = np.float32


# ---------------------------------------------------------------- references
def np_grid(bits, signed, narrow):
    if signed:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        qmin, qmax = 0, 2 ** bits - 1
    return qmin + int(narrow), qmax


def np_param_shape(shape, gran, axis, g):
    if gran == "per_tensor":
        return ()
    if gran == "per_channel":
        return (shape[axis],)
    p = list(shape)
    p[axis] //= g
    return tuple(p)


def np_minmax(x, gran, axis, g):
    if gran == "per_tensor":
        return x.min(), x.max()
    axis %= x.ndim
    if gran == "per_channel":
        other = tuple(d for d in range(x.ndim) if d != axis)
        return x.min(axis=other), x.max(axis=other)
    shp = list(x.shape)
    shp[axis:axis + 1] = [x.shape[axis] // g, g]
    xr = x.reshape(shp)
    return xr.min(axis=axis + 1), xr.max(axis=axis + 1)


def np_params(lo, hi, bits, signed, symmetric, narrow, pot):
    """scale/zero point in float32 arithmetic, as documented."""
    qmin, qmax = np_grid(bits, signed, narrow)
    lo = np.asarray(lo, F32)
    hi = np.asarray(hi, F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        if symmetric:
            amax = np.maximum(np.abs(lo), np.abs(hi)) if signed else np.maximum(hi, F32(0))
            s = np.where(amax == 0, F32(1), amax / F32(qmax)).astype(F32)
        else:
            s = ((np.maximum(hi, F32(0)) - np.minimum(lo, F32(0))) / F32(qmax - qmin)).astype(F32)
        s = np.where(lo == hi, np.where(lo == 0, F32(1), np.abs(lo)), s).astype(F32)
        if pot:
            m, e = np.frexp(s)
            s = np.where(m == 0.5, s, np.ldexp(F32(1), e)).astype(F32)
        s = np.where(s > 0, s, np.finfo(F32).smallest_subnormal).astype(F32)
        if symmetric:
            z = np.zeros(s.shape, np.int32)
        else:
            zf = F32(qmin) - np.rint(np.minimum(lo, F32(0)) / s)
            z = np.clip(zf, qmin, qmax).astype(np.int32)
    return s, z


def np_broadcast(p, shape, gran, axis, g):
    p = np.asarray(p)
    if gran == "per_tensor":
        return p.reshape(())
    axis %= len(shape)
    if gran == "per_channel":
        bshape = [1] * len(shape)
        bshape[axis] = shape[axis]
        return p.reshape(bshape)
    return np.repeat(p, g, axis=axis)


def np_quantize(x, s, z, qmin, qmax):
    """ONNX QuantizeLinear: saturate(rint(x / s) + z)."""
    return np.clip(np.rint(x / s) + z, qmin, qmax).astype(np.int64)


GRANS = [("per_tensor", None, None), ("per_channel", 0, None), ("per_channel", 1, None),
         ("per_channel", -1, None), ("per_group", -1, 4), ("per_group", 0, 3)]


def _kw(gran, axis, g):
    if gran == "per_tensor":
        return {}
    if gran == "per_channel":
        return {"axis": axis}
    return {"axis": axis, "group_size": g}


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(F32)
    # channels of very different ranges, plus a skewed (positive) block
    x *= np.exp(rng.uniform(-3, 3, size=(shape[0],) + (1,) * (len(shape) - 1))).astype(F32)
    x[-1] = np.abs(x[-1]) + F32(0.1)
    return x


# -------------------------------------------------------------- exactness
@pytest.mark.parametrize("bits", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("gran", GRANS, ids=lambda g: f"{g[0]}{g[1]}-{g[2]}")
@pytest.mark.parametrize("pot", [False, True])
def test_against_numpy_reference(bits, symmetric, signed, narrow, gran, pot):
    gname, axis, g = gran
    x = _data((6, 12, 8), seed=bits)
    x0 = x.copy()
    kw = dict(bits=bits, symmetric=symmetric, signed=signed, narrow_range=narrow,
              power_of_two=pot, **_kw(gname, axis, g))
    q, s, z = quantize(x, **kw)
    y = fake_quantize(x, **kw)
    assert np.array_equal(x, x0)  # input not mutated

    qmin, qmax = np_grid(bits, signed, narrow)
    assert int_range(bits, signed, narrow) == (qmin, qmax)
    ax = axis if axis is not None else 0
    lo, hi = np_minmax(x, gname, ax, g)
    s_ref, z_ref = np_params(lo, hi, bits, signed, symmetric, narrow, pot)
    assert s.shape == np_param_shape(x.shape, gname, ax % 3, g) == z.shape
    assert s.dtype == np.float32 and z.dtype == np.int32
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(z, z_ref)
    if pot:
        m, _ = np.frexp(s)
        assert np.all(m == 0.5)

    sb = np_broadcast(s_ref, x.shape, gname, ax, g)
    zb = np_broadcast(z_ref, x.shape, gname, ax, g)
    q_ref = np_quantize(x, sb, zb, qmin, qmax)
    expected_dtype = {(True, True): np.int8, (False, True): np.uint8,
                      (True, False): np.int16, (False, False): np.uint16}[(signed, bits <= 8)]
    assert q.dtype == expected_dtype and q.shape == x.shape
    np.testing.assert_array_equal(q.astype(np.int64), q_ref)  # exact: same rounding

    y_ref = ((q_ref - zb).astype(F32) * sb).astype(F32)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dequantize(q, s, z, **_kw(gname, axis, g)), y_ref)

    # the C++ scalar oracle agrees with the fast kernels
    sf, zf = s.reshape(-1), z.reshape(-1)
    scheme = _core.QuantScheme(bits, signed, symmetric, narrow, pot)
    core_axis = 0 if axis is None else axis
    core_g = g or 1
    np.testing.assert_array_equal(
        _core.ref_quant_fake_quantize(x, sf, zf, gname, core_axis, core_g, scheme), y)
    np.testing.assert_array_equal(
        _core.ref_quant_quantize(x, sf, zf, gname, core_axis, core_g, scheme), q_ref)

    # rounding error <= scale/2 wherever x is inside the representable range
    lo_r = (qmin - zb).astype(F32) * sb
    hi_r = (qmax - zb).astype(F32) * sb
    inside = (x >= lo_r) & (x <= hi_r)
    err = np.abs(y.astype(np.float64) - x)
    # s/2 plus float32 rounding of x/s and of q*s (visible at 16 bits)
    bound = np.broadcast_to(sb, x.shape).astype(np.float64) / 2 + 3e-7 * np.abs(x)
    assert np.all(err[inside] <= bound[inside] * (1 + 1e-6))
    # min/max scales clip nothing by more than half a step (asymmetric grids
    # shift by the rounded zero point), except negatives on unsigned symmetric grids
    # (and the degenerate unsigned narrow symmetric grid [1, qmax], which has no 0)
    valid = (x >= 0) if (symmetric and not signed) else np.ones(x.shape, bool)
    if symmetric and not signed and narrow:
        valid = x >= sb
    assert np.all(err[valid] <= bound[valid] * (1 + 1e-5))


@pytest.mark.parametrize("shape,gname,axis,g", [
    ((3, 70001), "per_tensor", None, None),
    ((3, 70001), "per_channel", 0, None),
    ((5, 70000), "per_channel", 1, None),     # channels on the contiguous axis, chunked
    ((4, 70000), "per_group", 1, 16),
    ((64, 2000), "per_group", 0, 8),
    ((7, 9, 1300), "per_channel", 1, None),
])
def test_large_tensors_parallel_path(shape, gname, axis, g):
    x = np.random.default_rng(1).standard_normal(shape).astype(F32) * F32(3)
    kw = _kw(gname, axis, g)
    q, s, z = quantize(x, bits=8, symmetric=False, **kw)
    y = fake_quantize(x, bits=8, symmetric=False, **kw)
    ax = axis if axis is not None else 0
    lo, hi = np_minmax(x, gname, ax, g)
    s_ref, z_ref = np_params(lo, hi, 8, True, False, False, False)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(z, z_ref)
    sb = np_broadcast(s_ref, shape, gname, ax, g)
    zb = np_broadcast(z_ref, shape, gname, ax, g)
    q_ref = np_quantize(x, sb, zb, -128, 127)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(y, ((q_ref - zb).astype(F32) * sb).astype(F32))
    lo_c, hi_c = _core.quant_min_max(x, gname, ax, g or 1)
    lo_r, hi_r = _core.ref_quant_min_max(x, gname, ax, g or 1)
    np.testing.assert_array_equal(lo_c, lo_r)
    np.testing.assert_array_equal(hi_c, hi_r)


def test_round_half_to_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5], F32)
    q, _, _ = quantize(x, bits=8, scale=1.0)
    np.testing.assert_array_equal(q, [0, 2, 2, 0, -2, -2, 4])
    np.testing.assert_array_equal(fake_quantize(x * F32(0.25), scale=0.25),
                                  F32(0.25) * np.array([0, 2, 2, 0, -2, -2, 4], F32))
    # with a zero point the tie is resolved before adding it (ONNX order)
    q, _, _ = quantize(x, bits=8, symmetric=False, scale=1.0, zero_point=1)
    np.testing.assert_array_equal(q, [1, 3, 3, 1, -1, -1, 5])


def test_saturation():
    x = np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0], F32)
    q, _, _ = quantize(x, bits=8, scale=0.01)
    np.testing.assert_array_equal(q, [-128, -100, 0, 100, 127])
    q, _, _ = quantize(x, bits=8, scale=0.01, narrow_range=True)
    np.testing.assert_array_equal(q, [-127, -100, 0, 100, 127])
    q, _, _ = quantize(x, bits=4, signed=False, scale=0.1)
    np.testing.assert_array_equal(q, [0, 0, 0, 10, 15])
    q, _, _ = quantize(x, bits=16, scale=0.01)
    np.testing.assert_array_equal(q, [-32768, -100, 0, 100, 32767])


def test_int8_symmetric_restricted_range():
    w = np.array([-2.0, -1.0, 0.0, 2.0], F32)
    q, s, z = quantize(w, bits=8, narrow_range=True)
    assert q.min() >= -127 and int(z) == 0 and q[0] == -127 and q[-1] == 127
    assert int_range(8, True, True) == (-127, 127)


@pytest.mark.parametrize("c", [0.0, 1.0, -3.75, 0.1, 1e-30, 12345.678])
@pytest.mark.parametrize("symmetric,signed", [(True, True), (False, True), (False, False)])
def test_constant_tensors_round_trip(c, symmetric, signed):
    x = np.full((4, 6), c, F32)
    for kw in ({}, {"axis": 0}, {"axis": 1, "group_size": 3}):
        y = fake_quantize(x, bits=4, symmetric=symmetric, signed=signed, **kw)
        np.testing.assert_array_equal(y, x)
        q, s, z = quantize(x, bits=4, symmetric=symmetric, signed=signed, **kw)
        np.testing.assert_array_equal(s, np.full(s.shape, abs(F32(c)) if c else F32(1)))
        np.testing.assert_array_equal(dequantize(q, s, z, **kw), x)


def test_constant_channel_among_others():
    x = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [0.3, 0.3, 0.3]], F32)
    y = fake_quantize(x, bits=8, axis=0)
    np.testing.assert_array_equal(y[0], x[0])
    np.testing.assert_array_equal(y[2], x[2])


def test_given_scale_and_zero_point_shapes():
    x = _data((4, 6))
    s = np.array([0.1, 0.2, 0.3, 0.4], F32)
    y = fake_quantize(x, axis=0, scale=s)
    np.testing.assert_array_equal(y, np.clip(np.rint(x / s[:, None]), -128, 127).astype(F32)
                                  * s[:, None])
    yg = fake_quantize(x, axis=1, group_size=3, scale=np.full((4, 2), 0.5), symmetric=False,
                       zero_point=np.full((4, 2), 3))
    np.testing.assert_array_equal(yg, (np.clip(np.rint(x / F32(0.5)) + 3, -128, 127) - 3)
                                  .astype(F32) * F32(0.5))
    out = np.empty_like(x)
    r = fake_quantize(x, axis=0, scale=s, out=out)
    assert r is out
    np.testing.assert_array_equal(out, y)


# ------------------------------------------------------------------ int4
@pytest.mark.parametrize("n", [1, 2, 7, 64, 1001])
@pytest.mark.parametrize("signed", [True, False])
def test_int4_pack_round_trip(n, signed):
    rng = np.random.default_rng(n)
    lo, hi = (-8, 7) if signed else (0, 15)
    q = rng.integers(lo, hi + 1, n).astype(np.int8)
    p = pack_int4(q, signed=signed)
    assert p.dtype == np.uint8 and p.shape == ((n + 1) // 2,)
    u = (q.astype(np.int64) & 0xF)
    expected = u[0::2].copy()
    expected[: len(u[1::2])] |= u[1::2] << 4
    np.testing.assert_array_equal(p, expected.astype(np.uint8))  # low nibble first
    np.testing.assert_array_equal(unpack_int4(p, n, signed=signed), q)


def test_int4_from_quantize():
    x = _data((8, 9))
    q, s, z = quantize(x, bits=4, axis=0)
    p = pack_int4(q)
    np.testing.assert_array_equal(dequantize(unpack_int4(p, q.shape), s, z, axis=0),
                                  fake_quantize(x, bits=4, axis=0))
    with pytest.raises(ValidationError, match=r"\[-8, 7\]"):
        pack_int4(np.array([8], np.int8))
    with pytest.raises(ValidationError, match="bytes"):
        unpack_int4(p, q.size + 5)


# --------------------------------------------------------------- torch
def test_matches_torch_per_channel():
    torch = pytest.importorskip("torch")
    x = _data((16, 3, 3, 40), seed=3)
    for pot in (True, False):
        q, s, z = quantize(x, bits=8, axis=0, symmetric=False, power_of_two=pot)
        y = fake_quantize(x, bits=8, axis=0, symmetric=False, power_of_two=pot)
        yt = torch.fake_quantize_per_channel_affine(
            torch.from_numpy(x), torch.from_numpy(s.copy()), torch.from_numpy(z.copy()),
            0, -128, 127).numpy()
        if pot:  # x / s == x * (1 / s) exactly: identical results
            np.testing.assert_array_equal(y, yt)
        else:  # torch multiplies by 1/s: at most a few ties flip by one step
            diff = np.abs(y - yt)
            assert (diff > 0).mean() < 1e-3
            assert np.all(diff <= np.broadcast_to(s[:, None, None, None], x.shape) * 1.0001)


# ------------------------------------------------------------ estimator
def test_estimator_contract():
    x = _data((6, 4, 3))
    x0 = x.copy()
    est = UniformQuantizer(bits=4, granularity="per_channel", axis=1, symmetric=False)
    assert est.get_params() == {"bits": 4, "granularity": "per_channel", "axis": 1,
                                "group_size": None, "symmetric": False, "signed": True,
                                "narrow_range": False, "power_of_two": False}
    for call in (est.transform, est.inverse_transform, est.fake_quantize):
        with pytest.raises(NotFittedError):
            call(x)
    assert not hasattr(est, "scale_")
    assert est.fit(x) is est
    q, s, z = quantize(x, bits=4, axis=1, symmetric=False)
    np.testing.assert_array_equal(est.scale_, s)
    np.testing.assert_array_equal(est.zero_point_, z)
    assert (est.qmin_, est.qmax_) == (-8, 7)
    np.testing.assert_array_equal(est.transform(x), q)
    np.testing.assert_array_equal(est.fit_transform(x), q)
    np.testing.assert_array_equal(est.inverse_transform(q),
                                  fake_quantize(x, bits=4, axis=1, symmetric=False))
    np.testing.assert_array_equal(est.fake_quantize(x), est.inverse_transform(q))
    assert np.array_equal(x, x0)
    # other data with the same channel count uses the learned parameters
    x2 = _data((2, 4, 7), seed=5)
    q2 = est.transform(x2)
    np.testing.assert_array_equal(q2, np.clip(np.rint(x2 / s[None, :, None]) + z[None, :, None],
                                              -8, 7))
    assert est.set_params(bits=8, narrow_range=True) is est
    assert est.bits == 8 and est.narrow_range
    assert est.fit(x).qmin_ == -127
    with pytest.raises(ValidationError, match="invalid parameter"):
        est.set_params(bogus=1)
    assert "UniformQuantizer(bits=8" in repr(est)
    # __init__ stores settings untouched; validation happens in fit
    bad = UniformQuantizer(bits=99, granularity="nope")
    assert bad.bits == 99
    with pytest.raises(ValidationError, match="granularity"):
        bad.fit(x)


def test_estimator_per_group_and_tensor():
    x = _data((4, 8))
    est = UniformQuantizer(granularity="per_group", axis=1, group_size=4).fit(x)
    assert est.scale_.shape == (4, 2)
    np.testing.assert_array_equal(est.fake_quantize(x), fake_quantize(x, axis=1, group_size=4))
    with pytest.raises(ValidationError, match="fitted on shape"):
        est.transform(_data((4, 16)))
    est = UniformQuantizer().fit(x)
    assert est.scale_.shape == ()
    np.testing.assert_array_equal(est.fake_quantize(x), fake_quantize(x))
    with pytest.raises(ValidationError, match="group_size is required"):
        UniformQuantizer(granularity="per_group").fit(x)


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize("bits", [1, 17, 0, -3])
def test_bad_bits(bits):
    with pytest.raises(ValidationError, match="bits"):
        fake_quantize(np.ones(3, F32), bits=bits)
    with pytest.raises(ValidationError, match="bits"):
        UniformQuantizer(bits=bits).fit(np.ones(3, F32))


def test_bad_inputs():
    x = _data((4, 6))
    with pytest.raises(TypeError, match="bits"):
        fake_quantize(x, bits=8.0)
    with pytest.raises(ValidationError, match="axis"):
        fake_quantize(x, axis=2)
    with pytest.raises(ValidationError, match="axis"):
        fake_quantize(x, axis=-3)
    with pytest.raises(ValidationError, match="group_size"):
        fake_quantize(x, axis=1, group_size=4)
    with pytest.raises(ValidationError, match="group_size"):
        fake_quantize(x, axis=1, group_size=0)
    for bad in (np.nan, np.inf, -np.inf):
        xb = x.copy()
        xb[2, 3] = bad
        with pytest.raises(ValidationError, match="w contains NaN or Inf"):
            fake_quantize(xb)
        with pytest.raises(ValidationError, match="NaN or Inf"):
            fake_quantize(xb, axis=0, scale=np.ones(4))  # the kernel checks too
        with pytest.raises(ValidationError, match="NaN or Inf"):
            quantize(xb, axis=1)
        with pytest.raises(ValidationError, match="NaN or Inf"):
            UniformQuantizer().fit(xb)
    with pytest.raises(ValidationError, match="empty"):
        fake_quantize(np.zeros((0, 3), F32))
    with pytest.raises(ValidationError, match="empty"):
        quantize([])
    for dt in (np.int32, np.int8, np.bool_, np.complex64):
        with pytest.raises(TypeError, match="floating"):
            fake_quantize(np.ones(4, dt))
        with pytest.raises(TypeError):
            UniformQuantizer().fit(np.ones(4, dt))
    with pytest.raises(TypeError):
        fake_quantize(np.array(["a"]))
    with pytest.raises(TypeError, match="signed"):
        fake_quantize(x, signed="yes")
    with pytest.raises(ValidationError, match="scale"):
        fake_quantize(x, axis=0, scale=np.ones(3))
    with pytest.raises(ValidationError, match="scale"):
        fake_quantize(x, scale=0.0)
    with pytest.raises(ValidationError, match="scale"):
        fake_quantize(x, scale=np.nan)
    with pytest.raises(ValidationError, match="zero_point"):
        fake_quantize(x, scale=1.0, zero_point=1)  # symmetric needs z = 0
    with pytest.raises(ValidationError, match="zero_point"):
        fake_quantize(x, scale=1.0, zero_point=300, symmetric=False)
    with pytest.raises(ValidationError, match="zero_point is required"):
        fake_quantize(x, scale=1.0, symmetric=False)
    with pytest.raises(TypeError, match="zero_point"):
        fake_quantize(x, scale=1.0, zero_point=0.5, symmetric=False)
    with pytest.raises(ValidationError, match="out"):
        fake_quantize(x, out=np.empty((3, 3), F32))
    with pytest.raises(TypeError, match="integer"):
        dequantize(x, 1.0)
    with pytest.raises(ValidationError, match="scale"):
        dequantize(np.ones((4, 6), np.int8), np.ones(5), axis=0)


def test_float_dtypes_and_lists_convert():
    x64 = np.linspace(-1, 1, 11)
    np.testing.assert_array_equal(fake_quantize(x64), fake_quantize(x64.astype(F32)))
    np.testing.assert_array_equal(fake_quantize(list(x64)), fake_quantize(x64.astype(F32)))
    xf = np.asfortranarray(_data((5, 7)))
    np.testing.assert_array_equal(fake_quantize(xf, axis=1),
                                  fake_quantize(np.ascontiguousarray(xf), axis=1))
    assert fake_quantize(np.float32(0.3)).shape == ()


def test_core_rejects_unconverted_arrays():
    # the binding never converts silently
    s = _core.QuantScheme(8, True, True, False, False)
    with pytest.raises(TypeError):
        _core.quant_fake_quantize(np.ones(4), np.ones(1, F32), np.zeros(1, np.int32),
                                  "per_tensor", 0, 1, s)
    assert lpcv.quantize.fake_quantize is fake_quantize


def test_docstring_examples_run():
    import doctest

    import lpcv.quantize
    import lpcv.quantize.calibration
    import lpcv.quantize.nonuniform
    import lpcv.quantize.uniform
    for mod in (lpcv.quantize, lpcv.quantize.uniform, lpcv.quantize.calibration,
                lpcv.quantize.nonuniform):
        res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert res.failed == 0, mod.__name__
        assert res.attempted > 0, mod.__name__


@pytest.mark.parametrize("signed", [True, False])
def test_matches_onnxruntime_quantize_linear_on_ties(signed):
    """x / scale (not x * (1/scale)) and half-to-even: bitwise onnxruntime's QuantizeLinear."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    s = rng.uniform(0.001, 0.1, size=16).astype(F32)
    lo = -100 if signed else 0
    k = rng.integers(lo, 100, size=(16, 500)).astype(F32) + F32(0.5)
    x = (k * s[:, None]).astype(F32)  # values at or next to exact ties
    x = np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)], axis=1)
    zp = rng.integers(-20, 20, 16) if signed else rng.integers(0, 60, 16)
    q, _, _ = quantize(x, bits=8, axis=0, signed=signed, symmetric=False, scale=s,
                       zero_point=zp)
    onnx_type, np_type = (TensorProto.INT8, np.int8) if signed else (TensorProto.UINT8, np.uint8)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=0)
    graph = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", onnx_type, list(x.shape))],
        [numpy_helper.from_array(s, "s"), numpy_helper.from_array(zp.astype(np_type), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0]
    np.testing.assert_array_equal(q, y)
    # the reciprocal-multiply shortcut would not agree on these ties
    qm = np.clip(np.rint(x * (F32(1) / s[:, None])) + zp[:, None], -128 if signed else 0,
                 127 if signed else 255)
    assert (qm != y).any()
